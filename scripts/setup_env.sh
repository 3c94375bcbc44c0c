#!/usr/bin/env bash
# Create (or reuse) the project virtualenv and install distwm with what the tests and the
# main job need. Idempotent: a second run with an unchanged pyproject.toml installs nothing.
# Usage: source scripts/setup_env.sh   (or: bash scripts/setup_env.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DISTWM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${DISTWM_EXTRAS:-test}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"

STAMP="$VENV/.distwm-installed"
WANT="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)-$EXTRAS"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[setup] installing distwm[$EXTRAS] into $VENV"
    python -m pip install -q --upgrade pip
    # The CPU build of torch first: a bare `torch` requirement could pull a multi-GB CUDA build.
    python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
    python -m pip install -q -e "$ROOT[$EXTRAS]"
    echo "$WANT" > "$STAMP"
fi

# Off-screen MuJoCo rendering (DMC pixels) needs EGL; install it when we can, else tests skip it.
if ! ldconfig -p 2>/dev/null | grep -q "libEGL.so.1"; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        echo "[setup] installing EGL for off-screen MuJoCo rendering"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null) || echo "[setup] EGL install failed; pixel tests will skip"
    fi
fi
export MUJOCO_GL="${MUJOCO_GL:-egl}"
