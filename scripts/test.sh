#!/usr/bin/env bash
# The test command: sets up the environment on a fresh machine, then runs the whole suite.
# Under CI=true a test whose system dependency or reference data is missing fails (tests/conftest.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export WANDB_MODE="${WANDB_MODE:-offline}"
# OpenMP threads that spin while they wait steal the cores of a small (2-core) machine from
# the Ray workers and the test process; sleep instead
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec python -m pytest -q "$@"
