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
# what decides the install: pyproject.toml less its pytest section (test settings install nothing)
WANT="$(awk '/^\[tool\.pytest/{skip=1; next} /^\[/{skip=0} !skip' "$ROOT/pyproject.toml" \
        | sha256sum | cut -c1-16)-$EXTRAS"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[setup] installing distwm[$EXTRAS] into $VENV"
    python -m pip install -q --upgrade pip
    # The CPU build of torch first: a bare `torch` requirement could pull a multi-GB CUDA build.
    python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
    python -m pip install -q -e "$ROOT[$EXTRAS]"
    echo "$WANT" > "$STAMP"
fi

# Off-screen MuJoCo rendering (the DMC / MuJoCo pixel tests) needs EGL with a Mesa driver. Probe
# it the way the tests do; install the Debian packages when we can (root + apt-get), else say
# why not. The tests skip without it, and fail under CI=true (tests/conftest.py `require`).
export MUJOCO_GL="${MUJOCO_GL:-egl}"
EGL_PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri"
_gl_probe() {
    MUJOCO_GL="$MUJOCO_GL" python - <<'PY' >/dev/null 2>&1
import mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=".1"/></worldbody></mujoco>')
r = mujoco.Renderer(m, 8, 8); d = mujoco.MjData(m); r.update_scene(d); r.render(); r.close()
PY
}
if ! env -u MUJOCO_GL python -c "import mujoco" 2>/dev/null; then
    echo "[setup] mujoco is not installed (extras: $EXTRAS): the pixel tests cannot run"
elif [ "$MUJOCO_GL" != "egl" ] && [ "$MUJOCO_GL" != "osmesa" ]; then
    echo "[setup] MUJOCO_GL=$MUJOCO_GL: the pixel tests need egl (or osmesa)"
elif ! _gl_probe; then
    why=""
    if [ "$MUJOCO_GL" != "egl" ]; then
        why="MUJOCO_GL=$MUJOCO_GL: install OSMesa (Debian: libosmesa6) or use MUJOCO_GL=egl"
    elif ! command -v apt-get >/dev/null; then
        why="no apt-get here: install EGL with a Mesa driver (Debian names: $EGL_PACKAGES) with this system's package manager"
    elif [ "$(id -u)" != "0" ]; then
        why="not root: run 'sudo apt-get install -y $EGL_PACKAGES' (or this script as root)"
    else
        echo "[setup] installing EGL for off-screen MuJoCo rendering ($EGL_PACKAGES)"
        if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                $EGL_PACKAGES >/dev/null); then
            why="apt-get install $EGL_PACKAGES failed"
        elif ! _gl_probe; then
            why="EGL is installed but MuJoCo still cannot render (MUJOCO_GL=egl): see python -c 'import mujoco; mujoco.Renderer'"
        fi
    fi
    if [ -n "$why" ]; then
        echo "[setup] off-screen rendering unavailable, pixel tests will skip (fail under CI=true): $why"
    fi
fi

# Published reference results (tests compare against them): not installable, they are read from
# ../shared/reference beside the checkout or from DISTWM_REFERENCE_DIR.
REFERENCE="${DISTWM_REFERENCE_DIR:-$(dirname "$ROOT")/shared/reference}"
if [ ! -d "$REFERENCE/atari100k" ] || [ ! -d "$REFERENCE/dreamerv3_curves" ]; then
    echo "[setup] no reference data at $REFERENCE (atari100k/, dreamerv3_curves/): tests that need it" \
         "skip (fail under CI=true); put the shared reference folder there or set DISTWM_REFERENCE_DIR"
fi
