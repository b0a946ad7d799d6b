#!/usr/bin/env bash
# Install everything, build ccorch optimized, and run one node with its embedded defaults.
# Extra arguments go to `ccorch serve` (e.g. --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh release
exec .venv/bin/ccorch serve "$@"
