#!/usr/bin/env bash
# The whole test suite and every quality gate, as CI runs it. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/setup.sh dev

step() { printf '\n== %s\n' "$*"; }
step "cargo fmt";    cargo fmt --all --check
step "cargo clippy"; cargo clippy --workspace --all-targets --locked -q -- -D warnings
step "cargo test";   cargo test --workspace --locked -q
step "ruff";         .venv/bin/ruff check . && .venv/bin/ruff format --check .
step "mypy";         .venv/bin/mypy
step "stubs";        .venv/bin/python -m mypy.stubtest ccorch._core
step "web app";      (cd web && npm run -s check && npm run -s lint)
step "pytest"        # exits non-zero when no test was collected (pytest's exit 5)
# Two workers (CCORCH_TEST_WORKERS): most tests wait on real time (calls, audio), so the
# machine's two cores run two modules at once; a module's tests stay on one worker.
.venv/bin/python -m pytest -n "${CCORCH_TEST_WORKERS:-2}" --dist loadfile "$@"
