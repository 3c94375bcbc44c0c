#!/usr/bin/env bash
# The main job: sets up the environment on a fresh machine, then runs a distributed DreamerV3
# training run (env-worker, replay-shard and learner actors) on a local Ray instance. It ends
# with a report (report.md + learning_curve.png) in the run directory, also printed to the log.
# Extra arguments go to `distwm train` (e.g. --steps 5000, --address auto, --set key=value).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export WANDB_MODE="${WANDB_MODE:-offline}"
exec distwm train --config quickstart --run-dir "${DISTWM_RUN_DIR:-runs/quickstart-$(date +%Y%m%d-%H%M%S)}" "$@"
