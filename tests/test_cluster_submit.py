"""`distwm submit` against a real local head node: the session's one Ray head (``local_head``
in ``tests/conftest.py``: `ray start --head` with the dashboard on free ports and its own temp
dir, stopped by terminating its processes, never with ``ray stop``). The test process itself
never sets RAY_ADDRESS.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import clean_env, free_ports

ROOT = Path(__file__).resolve().parents[1]


def _distwm_submit(address: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distwm.cli", "submit", "--address", address, *args],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=timeout,
    )


@pytest.mark.ray
def test_submitted_job_runs_in_working_dir_and_streams_its_logs(local_head):
    script = ("import distwm, os; print('job says hello', os.path.exists('pyproject.toml'), "
              "os.environ['PYTHONUNBUFFERED'])")
    result = _distwm_submit(local_head.address, "--", "python", "-c", script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "job says hello True 1" in result.stdout
    assert "SUCCEEDED" in result.stdout


@pytest.mark.ray
def test_failed_job_gives_nonzero_exit(local_head):
    result = _distwm_submit(local_head.address, "--no-working-dir", "--", "python", "-c",
                            "import sys; print('about to fail'); sys.exit(3)")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "about to fail" in result.stdout
    assert "FAILED" in result.stdout


def test_submit_without_command_or_cluster_is_a_clear_error(tmp_path):
    result = _distwm_submit("http://127.0.0.1:9", "--", timeout=60)
    assert result.returncode == 2 and "nothing to submit" in result.stderr
    port, = free_ports(1)
    result = _distwm_submit(f"http://127.0.0.1:{port}", "--no-working-dir", "--", "true",
                            timeout=60)
    assert result.returncode == 1
    assert "cannot reach the Ray Jobs API" in result.stderr


@pytest.mark.ray
def test_submit_script_uses_ray_address(local_head):
    env = {**clean_env(), "RAY_ADDRESS": local_head.address}
    result = subprocess.run(
        [str(ROOT / "scripts" / "submit.sh"), "--", "python", "-c", "print('from submit.sh')"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "from submit.sh" in result.stdout


def test_runtime_env_merges_user_json(tmp_path):
    from distwm.tune.submit import DEFAULT_EXCLUDES, build_runtime_env, resolve_address

    env = build_runtime_env(tmp_path, '{"env_vars": {"A": "1"}, "excludes": ["big/"], '
                                      '"pip": ["rich"]}')
    assert env["working_dir"] == str(tmp_path.resolve())
    assert env["env_vars"] == {"PYTHONUNBUFFERED": "1", "A": "1"}
    assert env["excludes"] == list(DEFAULT_EXCLUDES) + ["big/"] and env["pip"] == ["rich"]
    assert "working_dir" not in build_runtime_env(None)
    with pytest.raises(ValueError, match="not valid JSON"):
        build_runtime_env(tmp_path, "{nope")
    with pytest.raises(ValueError, match="not a directory"):
        build_runtime_env(tmp_path / "missing")
    assert resolve_address("http://h:1") == "http://h:1"
