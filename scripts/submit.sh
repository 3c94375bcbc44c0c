#!/usr/bin/env bash
# Submit a command as a Ray job with this checkout as its working directory, stream its logs and
# exit with the job's status: `distwm submit` when distwm is importable here, else plain
# `ray job submit` with the same working directory and runtime env.
#
#   scripts/submit.sh distwm sweep tune_configs/quickstart.yaml --address auto
#   RAY_ADDRESS=http://127.0.0.1:8265 scripts/submit.sh -- python -c "print('hello')"
#
# The address comes from RAY_ADDRESS (default http://127.0.0.1:8265, e.g. after
# `ray dashboard cluster/cluster.yaml`). Extra runtime env as JSON: DISTWM_RUNTIME_ENV_JSON.
set -euo pipefail
[[ "${1:-}" == "--" ]] && shift
if [[ $# -eq 0 ]]; then
    echo "usage: $0 [--] <command...>" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
address="${RAY_ADDRESS:-http://127.0.0.1:8265}"
if python -c "import distwm.tune.submit" >/dev/null 2>&1; then
    extra=()
    if [[ -n "${DISTWM_RUNTIME_ENV_JSON:-}" ]]; then
        extra=(--runtime-env-json "$DISTWM_RUNTIME_ENV_JSON")
    fi
    exec python -m distwm.cli submit --address "$address" "${extra[@]}" -- "$@"
fi
default_env='{"env_vars": {"PYTHONUNBUFFERED": "1"}, "excludes": [".git", ".venv", "runs", "results", "wandb", "ray_results"]}'
exec ray job submit --address "$address" --working-dir . \
    --runtime-env-json "${DISTWM_RUNTIME_ENV_JSON:-$default_env}" -- "$@"
