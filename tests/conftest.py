"""Shared fixtures and the rules every test runs under.

* **One Ray instance per session.** ``ray_head`` starts one local head node (``ray start
  --head`` with the dashboard, so the Jobs API and the metrics endpoint exist) on free ports
  and its own temp dir; ``ray_session`` connects this process to it, and ``local_head`` hands
  the same node to the ``distwm submit`` tests. Nothing else in the suite may start Ray: the
  runtime and Tune reuse an initialised Ray.
* **Missing requirements.** ``require`` / ``require_module`` / ``require_reference`` skip a test
  with what to install (or where the data should be); under ``CI=true`` they fail instead, and
  any other skip fails too (a test that may legitimately skip on CI machines, e.g. one that
  needs a GPU, says so with ``@pytest.mark.skip_ok_in_ci("why")``).
* **Markers and timeouts.** A test that uses ``ray_session`` (or the head) is marked ``ray``
  whether or not its module says so. Per-test timeouts (pytest-timeout, setup included, so
  the first test of a module-scoped run pays for the run): pyproject's default for plain
  tests, :data:`RAY_TIMEOUT` for ``ray`` tests, :data:`SLOW_RAY_TIMEOUT` for ``ray`` + ``slow``;
  a test's own ``@pytest.mark.timeout`` wins.
* **Seeded randomness.** ``random``, ``numpy.random`` and ``torch`` are seeded before every test
  from its node id, so a test sees the same numbers whatever ran before it.
"""

from __future__ import annotations

import importlib
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
VENV_BIN = Path(sys.executable).parent

RAY_TIMEOUT = 300  # s: a ray-marked test (its share of a module-scoped run included)
SLOW_RAY_TIMEOUT = 480  # s: ray + slow (a whole tiny sweep, stopped and resumed)
HEAD_CPUS = 4


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


IN_CI = _truthy(os.environ.get("CI"))
SETUP_HINT = "bash scripts/setup_env.sh installs what the tests need"


# -- missing requirements: skip outside CI, fail in CI ---------------------------------------

def require(condition: Any, what: str, how: str) -> None:
    """Go on when ``condition`` holds; else skip (outside CI) or fail (``CI=true``) with
    ``what`` is missing and ``how`` to get it."""
    if condition:
        return
    message = f"{what} is missing: {how}"
    if IN_CI:
        pytest.fail(f"CI=true: a missing requirement fails the test. {message}", pytrace=False)
    pytest.skip(message)


def require_module(name: str, how: str | None = None):
    """``import name`` (the module), or :func:`require`'s skip / CI failure naming ``how``."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        error = str(exc)
    require(False, f"Python module {name!r} ({error})", how or f"pip install -e '.[test]' ({SETUP_HINT})")


def require_reference(relative: str = "") -> Path:
    """The published reference folder (``../shared/reference`` beside the checkout, or
    ``DISTWM_REFERENCE_DIR``), or the path ``relative`` inside it; skip / CI failure when absent."""
    from distwm.benchmarks.reference import REFERENCE_ENV_VAR, resolve_reference_dir

    try:
        folder = resolve_reference_dir()
    except FileNotFoundError as exc:
        require(False, "the published reference data", str(exc))
    path = folder / relative
    require(path.exists(), f"reference file {path}",
            f"put the shared reference folder (atari100k/, dreamerv3_curves/) at "
            f"{ROOT.parent / 'shared' / 'reference'} or set {REFERENCE_ENV_VAR} to it")
    return path


def _ci_failure(reason: str) -> str:
    return (f"CI=true: a skip is a failure in CI. Install what is missing ({SETUP_HINT}) or, if "
            f"this test cannot run on CI machines at all, mark it skip_ok_in_ci. Skip reason: "
            f"{reason}")


def _skip_reason(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (IN_CI and report.skipped and not hasattr(report, "wasxfail")
            and item.get_closest_marker("skip_ok_in_ci") is None):
        report.outcome = "failed"
        report.longrepr = _ci_failure(_skip_reason(report.longrepr))


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.outcome == "skipped":  # a module-level importorskip / skip
        report.outcome = "failed"
        report.longrepr = _ci_failure(_skip_reason(report.longrepr))


# -- markers and timeouts --------------------------------------------------------------------

RAY_FIXTURES = {"ray_session", "ray_head", "local_head"}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if RAY_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("ray") is None:
            item.add_marker(pytest.mark.ray)
        if item.get_closest_marker("timeout") is None and item.get_closest_marker("ray") is not None:
            slow = item.get_closest_marker("slow") is not None
            item.add_marker(pytest.mark.timeout(SLOW_RAY_TIMEOUT if slow else RAY_TIMEOUT))


# -- per-test state --------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def seeded_randomness(request):
    """The global generators, seeded from the test's id (not from what ran before)."""
    seed = zlib.crc32(request.node.nodeid.encode())
    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
    yield


@pytest.fixture(scope="session", autouse=True)
def single_torch_thread():
    """Tiny test models run far faster on one thread, above all on a busy 2-core machine."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# -- the session's Ray head ------------------------------------------------------------------

def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def clean_env() -> dict[str, str]:
    """This process's environment for Ray subprocesses: the venv's commands first, no Ray
    address (an explicit --address / GCS address always names our own head)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _worker_pythonpath() -> str:
    # workers import test-only helper modules (tests/) and distwm by reference
    return os.pathsep.join(p for p in (str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


class Head(NamedTuple):
    address: str  # the dashboard / Jobs API (http://127.0.0.1:PORT)
    gcs_address: str  # what ray.init(address=...) connects to
    metrics_port: int  # Prometheus endpoint of the node's metrics agent
    temp_dir: str


# A watchdog beside the head: if this test process dies without its teardown (SIGKILL, a
# pytest-timeout thread exit), it stops every process of our head (found by its temp dir).
WATCHDOG = r"""
import os, shutil, sys, time
import psutil
parent, temp_dir = int(sys.argv[1]), sys.argv[2]
while psutil.pid_exists(parent) and psutil.Process(parent).status() != psutil.STATUS_ZOMBIE:
    time.sleep(2)
ours = []
for proc in psutil.process_iter(["cmdline"]):
    try:
        if proc.pid != os.getpid() and any(temp_dir in part for part in proc.info["cmdline"] or ()):
            ours.append(proc)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
for proc in ours:
    try:
        proc.terminate()
    except psutil.NoSuchProcess:
        pass
for proc in psutil.wait_procs(ours, timeout=5)[1]:
    try:
        proc.kill()
    except psutil.NoSuchProcess:
        pass
shutil.rmtree(temp_dir, ignore_errors=True)
if os.path.exists(temp_dir + ".log"):
    os.unlink(temp_dir + ".log")
"""


def _processes_of(temp_dir: str) -> list:
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.pid != os.getpid() and any(temp_dir in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _stop_head(block_proc: subprocess.Popen, temp_dir: str) -> None:
    """Terminate our head: `ray start --block`, every process it started (raylet, GCS,
    dashboard, workers, ...) and anything else with our temp dir in its command line. Never
    `ray stop` (it would stop other people's Ray instances on this machine)."""
    import psutil

    ours = _processes_of(temp_dir)
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
    for proc in alive + _processes_of(temp_dir):
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        block_proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _use_local_token_if_any() -> None:
    from distwm.tune.submit import _use_local_token_if_any as use

    use()


@pytest.fixture(scope="session")
def ray_head():
    """The session's one Ray node, on free ports (GCS, dashboard, client server, dashboard
    agent, metrics) and its own temp dir, isolated from other Ray instances on the machine."""
    require_module("ray")
    require_module("aiohttp", "the Ray Jobs API needs ray[default]: pip install -e '.[test]'")
    require_module("psutil", "pip install -e '.[test]' (ray[default] brings psutil)")
    gcs_port, dashboard_port, client_port, agent_port, metrics_port = free_ports(5)
    temp_dir = f"/tmp/distwm_test_{os.getpid()}"
    cmd = [
        str(VENV_BIN / "ray"), "start", "--head", "--block",
        "--num-cpus", str(HEAD_CPUS), "--include-dashboard", "true",
        "--dashboard-host", "127.0.0.1",
        "--port", str(gcs_port), "--dashboard-port", str(dashboard_port),
        "--ray-client-server-port", str(client_port),
        "--dashboard-agent-listen-port", str(agent_port),
        "--metrics-export-port", str(metrics_port),
        "--temp-dir", temp_dir, "--disable-usage-stats",
    ]
    env = {**clean_env(), "PYTHONPATH": _worker_pythonpath()}
    log = open(Path(f"{temp_dir}.log"), "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(os.getpid()), temp_dir],
                                env=clean_env(), start_new_session=True)
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.monotonic() + 180  # ray start is what can hang here
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
            if time.monotonic() > deadline:
                raise RuntimeError(f"no dashboard at {address}: {Path(log.name).read_text()[-3000:]}")
            time.sleep(0.5)
        yield Head(address, f"127.0.0.1:{gcs_port}", metrics_port, temp_dir)
    finally:
        _stop_head(proc, temp_dir)
        watchdog.terminate()
        watchdog.wait(timeout=10)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        Path(log.name).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def ray_session(ray_head):
    """This process connected to the session's head; every Ray test shares it."""
    import ray

    if not ray.is_initialized():
        _use_local_token_if_any()  # a head started with ~/.ray/auth_token wants it back
        ray.init(
            address=ray_head.gcs_address,
            runtime_env={"env_vars": {"PYTHONPATH": _worker_pythonpath(),
                                      "MUJOCO_GL": os.environ["MUJOCO_GL"]}},
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def local_head(ray_session, ray_head) -> Head:
    """The session's head for tests that talk to it from outside (Jobs API, metrics)."""
    return ray_head
