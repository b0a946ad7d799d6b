"""Supervision: Prometheus metrics (``cc_*``), and later supervisor actions, reports and alarms."""
