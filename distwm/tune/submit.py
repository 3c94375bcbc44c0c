"""``distwm submit -- <command...>``: run a command as a Ray job on a cluster.

The same as ``ray job submit --working-dir . --runtime-env-json ... -- <command>`` through the
Ray Jobs SDK (:class:`ray.job_submission.JobSubmissionClient`): the current checkout is
uploaded as the job's working directory (``.gitignore`` and :data:`DEFAULT_EXCLUDES` are left
out), the job's logs stream to stdout while it runs, and the exit status is the job's: 0 when
it SUCCEEDED, 1 when it FAILED or was STOPPED.

The Jobs API is served by the dashboard of the head node: ``http://127.0.0.1:8265`` after
``ray dashboard cluster/cluster.yaml`` (or ``kubectl port-forward svc/distwm-head-svc 8265``).
The address comes from ``--address``, else ``RAY_API_SERVER_ADDRESS`` / ``RAY_ADDRESS``, else
:data:`DEFAULT_ADDRESS`. Needs ``ray[default]`` (aiohttp) on the submitting machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TextIO

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_EXCLUDES",
    "resolve_address",
    "build_runtime_env",
    "submit_job",
    "JobOutcome",
]

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
DEFAULT_EXCLUDES = (
    ".git", ".venv", "**/__pycache__", "*.egg-info", "runs", "results", "wandb",
    "ray_results", ".pytest_cache",
)
_ADDRESS_ENV_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")


def resolve_address(address: str | None = None) -> str:
    """``address``, else ``RAY_API_SERVER_ADDRESS`` or ``RAY_ADDRESS``, else the default."""
    if address:
        return address
    for var in _ADDRESS_ENV_VARS:
        if os.environ.get(var):
            return os.environ[var]
    return DEFAULT_ADDRESS


def build_runtime_env(
    working_dir: str | os.PathLike | None = ".",
    extra: Mapping[str, Any] | str | None = None,
) -> dict[str, Any]:
    """The job's runtime env: the working directory to upload plus ``extra``.

    ``extra`` (a mapping or a JSON string, as ``--runtime-env-json``) overrides the defaults
    key by key, except that ``env_vars`` and ``excludes`` are merged.
    """
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--runtime-env-json is not valid JSON: {exc}") from None
    if extra is not None and not isinstance(extra, Mapping):
        raise ValueError(f"the runtime env must be a JSON object, got {extra!r}")
    env: dict[str, Any] = {"env_vars": {"PYTHONUNBUFFERED": "1"}}
    if working_dir is not None:
        path = Path(working_dir)
        if not path.is_dir():
            raise ValueError(f"--working-dir {str(path)!r} is not a directory")
        env["working_dir"] = str(path.resolve())
        env["excludes"] = list(DEFAULT_EXCLUDES)
    for key, value in dict(extra or {}).items():
        if key == "env_vars" and isinstance(value, Mapping):
            env["env_vars"] = {**env["env_vars"], **value}
        elif key == "excludes" and isinstance(value, list):
            env["excludes"] = env.get("excludes", []) + value
        else:
            env[key] = value
    return env


def _use_local_token_if_any() -> None:
    """Send ``~/.ray/auth_token`` (or RAY_AUTH_TOKEN[_PATH]) when there is one, as ``ray start``
    and ``ray.init`` do; Ray's job SDK alone only sends it when RAY_AUTH_MODE=token."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


@contextlib.contextmanager
def _explicit_address(address: str | None) -> Iterator[None]:
    """Make an explicit ``--address`` win: Ray's SDK prefers RAY_ADDRESS over its argument."""
    if not address:
        yield
        return
    saved = {var: os.environ.pop(var) for var in _ADDRESS_ENV_VARS if var in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


class JobOutcome:
    """The end of a job: its id, final status (a ``ray.job_submission.JobStatus`` name),
    Ray's message, and the process exit code it maps to."""

    def __init__(self, submission_id: str, status: str, message: str | None):
        self.submission_id = submission_id
        self.status = status
        self.message = message or ""

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "SUCCEEDED" else 1

    def __repr__(self) -> str:
        return f"JobOutcome({self.submission_id!r}, {self.status!r}, {self.message!r})"


async def _stream_logs(client: Any, submission_id: str, out: TextIO) -> None:
    async for chunk in client.tail_job_logs(submission_id):
        out.write(chunk)
        out.flush()


def _wait_terminal(client: Any, submission_id: str, poll_s: float = 1.0) -> str:
    import time

    while True:
        status = client.get_job_status(submission_id)
        if status.is_terminal():
            return str(status.value)
        time.sleep(poll_s)


def submit_job(
    command: Sequence[str] | str,
    *,
    address: str | None = None,
    working_dir: str | os.PathLike | None = ".",
    runtime_env: Mapping[str, Any] | str | None = None,
    submission_id: str | None = None,
    entrypoint_num_cpus: float | None = None,
    wait: bool = True,
    out: TextIO | None = None,
) -> JobOutcome:
    """Submit ``command`` as a Ray job; with ``wait``, stream its logs until it ends.

    ``command`` is an argv list (quoted with :func:`shlex.join`) or a shell string.
    Returns a :class:`JobOutcome`; without ``wait`` its status is the one at submission.
    """
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    out = out or sys.stdout
    if isinstance(command, str):
        entrypoint = command.strip()
    else:
        entrypoint = shlex.join(list(command))
    if not entrypoint:
        raise ValueError("nothing to submit: give the command after `--`, e.g. "
                         "`distwm submit -- distwm sweep tune_configs/quickstart.yaml`")
    env = build_runtime_env(working_dir, runtime_env)
    url = resolve_address(address)
    _use_local_token_if_any()
    with _explicit_address(address):
        try:
            client = JobSubmissionClient(url)
        except AuthenticationError as exc:
            raise ConnectionError(
                f"the Ray Jobs API at {url!r} wants the cluster's token: copy the head node's "
                "~/.ray/auth_token to yours or set RAY_AUTH_TOKEN. Ray said: " + str(exc)
            ) from None
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConnectionError(
                f"cannot reach the Ray Jobs API at {url!r}: {exc}. Is the cluster up and the "
                "dashboard forwarded (`ray dashboard cluster/cluster.yaml`)? Set --address "
                "or RAY_ADDRESS."
            ) from None
    job_id = client.submit_job(
        entrypoint=entrypoint,
        runtime_env=env,
        submission_id=submission_id,
        entrypoint_num_cpus=entrypoint_num_cpus,
    )
    out.write(f"distwm submit: job {job_id!r} submitted to {url}: {entrypoint}\n")
    out.flush()
    if not wait:
        return JobOutcome(job_id, str(client.get_job_status(job_id).value), None)
    try:
        asyncio.run(_stream_logs(client, job_id, out))
    except KeyboardInterrupt:
        out.write(f"\ndistwm submit: stopped following; the job keeps running. "
                  f"Stop it with `ray job stop {job_id} --address {url}`\n")
        raise
    except RuntimeError as exc:  # the log stream closed before the job ended
        out.write(f"distwm submit: log stream interrupted ({exc}); waiting for the job\n")
    status = _wait_terminal(client, job_id)
    info = client.get_job_info(job_id)
    outcome = JobOutcome(job_id, status, getattr(info, "message", None))
    out.write(f"distwm submit: job {job_id!r} {status}"
              + (f": {outcome.message}" if outcome.message else "") + "\n")
    out.flush()
    return outcome
