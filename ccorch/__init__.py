"""ccorch: an open-source contact-center platform.

The native hot paths live in the private extension ``ccorch._core``; everything a user
imports is in the Python package around it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ccorch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
