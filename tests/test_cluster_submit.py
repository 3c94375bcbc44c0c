"""`distwm submit` against a real local head node started with `ray start --head`.

Isolation from everything else on the machine (the session-wide ``ray_session`` fixture and
other people's Ray instances): the head runs in subprocesses only, with its own temp dir and
its own free ports (GCS, dashboard, client server, dashboard agent), and is stopped by
terminating the processes it started (found by its temp dir), never with ``ray stop``. The
test process itself never sets RAY_ADDRESS.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest

pytest.importorskip("ray")
pytest.importorskip("aiohttp", reason="the Ray Jobs API needs ray[default]")
psutil = pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _processes_of(temp_dir: str) -> list:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _stop_head(block_proc: subprocess.Popen, temp_dir: str) -> None:
    """Terminate our head: `ray start --block`, every process it started (raylet, GCS,
    dashboard, workers, ...) and anything else with our temp dir in its command line."""
    ours = [p for p in _processes_of(temp_dir) if p.pid != os.getpid()]
    try:
        ours += psutil.Process(block_proc.pid).children(recursive=True)
        ours.append(psutil.Process(block_proc.pid))
    except psutil.NoSuchProcess:
        pass
    ours = list({p.pid: p for p in ours}.values())
    for proc in ours:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(ours, timeout=5)
    for proc in alive + [p for p in _processes_of(temp_dir) if p.pid != os.getpid()]:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        block_proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class Head(NamedTuple):
    address: str  # the dashboard / Jobs API
    metrics_port: int  # Prometheus endpoint of the node's metrics agent


@pytest.fixture(scope="module")
def local_head():
    """A Ray head with the dashboard (Jobs API) on free ports."""
    gcs_port, dashboard_port, client_port, agent_port, metrics_port = _free_ports(5)
    temp_dir = f"/tmp/distwm_submit_test_{os.getpid()}"
    cmd = [
        str(VENV_BIN / "ray"), "start", "--head", "--block",
        "--num-cpus", "2", "--include-dashboard", "true",
        "--dashboard-host", "127.0.0.1",
        "--port", str(gcs_port), "--dashboard-port", str(dashboard_port),
        "--ray-client-server-port", str(client_port),
        "--dashboard-agent-listen-port", str(agent_port),
        "--metrics-export-port", str(metrics_port),
        "--object-store-memory", str(100 * 1024 * 1024),
        "--temp-dir", temp_dir, "--disable-usage-stats",
    ]
    log = open(Path(f"{temp_dir}.log"), "w")
    proc = subprocess.Popen(cmd, env=_clean_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited: {Path(log.name).read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2).close()
                break
            except urllib.error.HTTPError:  # 401 with token auth: the server is up
                break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"no dashboard at {address}: {Path(log.name).read_text()[-3000:]}")
            time.sleep(1)
        yield Head(address, metrics_port)
    finally:
        _stop_head(proc, temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        Path(log.name).unlink(missing_ok=True)


def _distwm_submit(address: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distwm.cli", "submit", "--address", address, *args],
        cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=timeout,
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
    port, = _free_ports(1)
    result = _distwm_submit(f"http://127.0.0.1:{port}", "--no-working-dir", "--", "true",
                            timeout=60)
    assert result.returncode == 1
    assert "cannot reach the Ray Jobs API" in result.stderr


@pytest.mark.ray
def test_submit_script_uses_ray_address(local_head):
    env = {**_clean_env(), "RAY_ADDRESS": local_head.address}
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
