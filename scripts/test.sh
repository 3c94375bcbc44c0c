#!/usr/bin/env bash
# The test command: sets up the environment on a fresh machine, then runs the whole suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export WANDB_MODE="${WANDB_MODE:-offline}"
exec python -m pytest -q "$@"
