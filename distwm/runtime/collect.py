"""``distwm collect``: env-worker Ray actors write a dataset of pixel episodes for the
dataset-trained models (Genie, ...).

::

    distwm collect --env ALE/Breakout-v5 --workers 8 --episodes 1000 --out data/breakout
    distwm collect --env minatar:breakout --workers auto --envs-per-worker 4 --episodes 200 \\
        --max-steps 500 --set image_size=64 --out data/minatar-breakout
    distwm collect --policy runs/dreamer-pong-20250101-120000 --episodes 100 --out data/pong

Each :class:`~distwm.runtime.collect_worker.CollectWorker` actor owns ``--envs-per-worker`` envs
and writes whole episodes to its own shard files (``worker-<i>-<n>.h5``, DESIGN.md's transition
stream: frames uint8, actions, rewards, episode flags; see
:mod:`distwm.datasets.video_shards`); the driver splits the ``--episodes`` budget evenly over
the workers, prints a progress line (episodes, steps, steps/s, ETA) every ``progress_seconds``
and, when every worker is done, writes ``manifest.json``, which the datasets read. A dataset
without a manifest is incomplete. On a multi-node cluster ``--out`` must be a directory every
node mounts.

The env is built as the runtime builds it (``runtime.env_factory``, by default
``distwm.envs:make_env_from_config`` over an :class:`~distwm.configs.rl_config.RLConfig`, so
every backend of ``distwm backends`` works), with pixels (``obs_type=pixels``), no action repeat
of distwm's own and no time limit but ``--max-steps``; ``--set key=value`` changes an env field
(``image_size``, ``obs_type``, ``env_kwargs``, ``action_repeat``, ``time_limit``,
``env_backend``) or, as ``runtime.env_factory=module:fn``, the factory. ``--policy RUN_DIR`` (or
a checkpoint directory ``RUN_DIR/checkpoints/ckpt-N``) acts with a distwm RL run's agent from
its checkpoint (``explore=True``) on that run's env; ``--env`` and ``--set`` then override the
run's settings. Each env gets its own seed derived from ``--seed``: the same command writes the
same frames.

Every option is checked, and one env is built to check that it gives pixels, before any actor
starts. The driver process imports no torch (a checkpointed policy is built in the actors).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from distwm.configs.runtime_config import RunConfig
from distwm.runtime import placement
from distwm.runtime.collect_worker import CollectWorker, probe_collection, split_evenly
from distwm.runtime.run_report import _duration
from distwm.utils import storage

__all__ = ["collect", "CollectResult", "collect_run_config", "resolve_policy", "check_out",
           "probe_collection",
           "format_collect_progress", "add_collect_parser", "cmd_collect", "RANDOM_POLICY"]

_log = logging.getLogger(__name__)

RANDOM_POLICY = "random"
#: the env config of a random-policy collection (an RLConfig's env fields)
ENV_CONFIG = "distwm.configs.rl_config:RLConfig"
#: what a random-policy collection changes of RLConfig's defaults (RL training conventions)
ENV_DEFAULTS = {"obs_type": "pixels", "action_repeat": 1, "time_limit": 0}
SHARD_PATTERN = ("worker-", (".h5", ".h5.partial"))


@dataclass
class CollectResult:
    """What :func:`collect` returns: the dataset directory and its manifest."""

    out: str
    manifest: dict[str, Any]
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def episodes(self) -> int:
        return int(self.manifest["episodes"])

    @property
    def steps(self) -> int:
        return int(self.manifest["steps"])


# -- checks before Ray -------------------------------------------------------------------------

def resolve_policy(policy: str) -> tuple[str, str] | None:
    """``None`` for ``"random"``; else ``(run_dir, checkpoint_dir)`` of a run directory (its
    latest checkpoint) or of a checkpoint directory (``RUN_DIR/checkpoints/ckpt-N``)."""
    from distwm.runtime.checkpoints import CHECKPOINT_FILE, latest_checkpoint

    if policy == RANDOM_POLICY:
        return None
    path = policy if "://" in policy else os.path.abspath(policy)
    path = path.rstrip("/")
    if storage.is_file(storage.join(path, CHECKPOINT_FILE)):
        return path.rsplit("/", 2)[0], path
    checkpoint = latest_checkpoint(path)
    if checkpoint is None:
        raise ValueError(
            f"--policy {policy!r} is neither 'random', a distwm run directory with a checkpoint "
            f"(checkpoints/latest) nor a checkpoint directory (holding {CHECKPOINT_FILE})"
        )
    return path, checkpoint


def collect_run_config(env: str | None, policy: str = RANDOM_POLICY,
                       overrides: Sequence[str] = ()) -> tuple[RunConfig, str | None]:
    """The :class:`RunConfig` whose env (and, for a checkpoint, agent) the workers build, and
    the checkpoint directory (``None``: random actions). ``ValueError`` on a bad option."""
    from distwm.runtime.setup import load_run_config

    resolved = resolve_policy(policy)
    if resolved is None:
        if not env:
            raise ValueError("--env is required with --policy random (e.g. --env ALE/Breakout-v5; "
                             "see `distwm envs`)")
        run = RunConfig(model=ENV_CONFIG, agent={"env": env, **ENV_DEFAULTS})
        checkpoint = None
    else:
        run_dir, checkpoint = resolved
        run = load_run_config(run_dir)
        if env:
            run = run.replace(agent={**run.agent, "env": env})
    for assignment in overrides:
        run = run.apply_override(assignment)
    return run.validate(), checkpoint


def _shard_files(out: str) -> list[str]:
    prefix, suffixes = SHARD_PATTERN
    return sorted(f for f in os.listdir(out) if f.startswith(prefix) and f.endswith(suffixes))


def check_out(out: str, overwrite: bool = False) -> tuple[str, list[str]]:
    """``(absolute directory, files to delete)`` for the dataset directory ``out``. A directory
    that already holds a dataset (a manifest, or shard files of an unfinished collection) is
    refused unless ``overwrite``: then that manifest and those shard files (nothing else) are
    the files to delete."""
    from distwm.datasets.video_shards import MANIFEST_NAME

    if "://" in str(out):
        raise ValueError(f"--out {out!r}: collect writes to a local directory (on a cluster, a "
                         "mount every node shares), not a URI")
    out = os.path.abspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file, not a directory")
    manifest = os.path.join(out, MANIFEST_NAME)
    old = ([MANIFEST_NAME] if os.path.exists(manifest) else []) + (
        _shard_files(out) if os.path.isdir(out) else [])
    if old and not overwrite:
        what = (f"a dataset ({manifest})" if old[0] == MANIFEST_NAME else
                f"{len(old)} shard files of an unfinished collection ({old[0]}, ...)")
        raise ValueError(f"--out {out} already holds {what}: choose another --out or pass "
                         "--overwrite to replace it")
    return out, old


def _clear_out(out: str, old: Sequence[str]) -> None:
    os.makedirs(out, exist_ok=True)
    for name in old:
        os.remove(os.path.join(out, name))


def _positive(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


# -- progress ----------------------------------------------------------------------------------

def format_collect_progress(rec: dict[str, Any]) -> str:
    """One progress line: episodes written, env steps, steps/s, workers still running, mean
    return of the episodes written since the last line, ETA."""
    ret, eta = rec.get("episode_return"), rec.get("eta_seconds")
    total = rec["episodes_total"]
    return (
        f"[distwm] collect {rec['episodes']:>6,d}/{total:,d} episodes "
        f"({100 * rec['episodes'] / max(total, 1):5.1f}%) | {rec['env_steps']:>9,d} steps | "
        f"{rec['env_steps_per_s']:8.1f} steps/s | workers {rec['workers_running']}/{rec['workers']} | "
        f"return {'-' if ret is None else f'{ret:.2f}'} | "
        f"ETA {'-' if eta is None else _duration(eta)}"
    )


class _Progress:
    def __init__(self, episodes: int, workers: int, verbose: bool):
        self.total, self.workers, self.verbose = episodes, workers, verbose
        self.start = time.monotonic()
        self.steps = self.episodes = self.written_steps = 0
        self.returns: list[float] = []
        self.history: list[dict[str, Any]] = []

    def add(self, result: dict[str, Any]) -> None:
        self.steps += int(result["steps"])
        for ret, length in result["episodes"]:
            self.episodes += 1
            self.written_steps += length
            self.returns.append(ret)

    def line(self, running: int) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        left = self.total - self.episodes
        rec = {"episodes": self.episodes, "episodes_total": self.total, "env_steps": self.steps,
               "written_steps": self.written_steps, "env_steps_per_s": self.steps / elapsed,
               "workers": self.workers, "workers_running": running,
               "episode_return": sum(self.returns) / len(self.returns) if self.returns else None,
               "eta_seconds": 0.0 if left <= 0 else (elapsed * left / self.episodes
                                                     if self.episodes else None),
               "elapsed": elapsed}
        self.returns = []
        self.history.append(rec)
        self.say(format_collect_progress(rec))
        return rec

    def say(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)
        _log.info(text)


# -- the driver --------------------------------------------------------------------------------

def collect(env: str | None, out: str, episodes: int, *, workers: int | str = "auto",
            envs_per_worker: int = 1, max_steps: int | None = None, policy: str = RANDOM_POLICY,
            seed: int = 0, steps_per_shard: int = 10_000, overrides: Sequence[str] = (),
            overwrite: bool = False, address: str | None = None, worker_cpus: float = 1.0,
            collect_seconds: float = 1.0, progress_seconds: float = 10.0,
            verbose: bool = True) -> CollectResult:
    """Collect ``episodes`` whole episodes of ``env`` into the shard directory ``out`` with
    ``workers`` Ray actors (``"auto"``: one per ``worker_cpus`` CPUs of the cluster, at most one
    per episode); see the module docstring. Returns the manifest written."""
    import ray

    from distwm.datasets.video_shards import read_manifest, write_manifest
    from distwm.runtime.supervision import kill_actor

    _positive("--episodes", episodes)
    _positive("--envs-per-worker", envs_per_worker)
    _positive("--max-steps", max_steps, allow_none=True)
    _positive("--steps-per-shard", steps_per_shard)
    if workers != "auto":
        _positive("--workers", workers)
    if not worker_cpus > 0:
        raise ValueError(f"worker_cpus must be > 0, got {worker_cpus!r}")
    run, checkpoint = collect_run_config(env, policy, overrides)
    meta = probe_collection(run, seed, max_steps)
    out, old = check_out(out, overwrite)
    started_ray = placement.connect(address, None if workers == "auto" else
                                    max(os.cpu_count() or 1, int(workers * worker_cpus + 0.999)))
    actors: list[Any] = []
    pg = None
    try:
        cpus = ray.cluster_resources().get("CPU", 0.0)
        count = max(1, int(cpus // worker_cpus)) if workers == "auto" else int(workers)
        count = min(count, episodes)
        plan = placement.ActorPlan(count, envs_per_worker, 0, worker_cpus, 0.0, 0.0, 0.0, 0.0,
                                   False, learners=0, bundles=[{"CPU": worker_cpus}] * count)
        placement.check_fits(plan, cpus, 0.0)
        _clear_out(out, old)
        pg = placement.create_placement_group(plan, "PACK")
        quotas = split_evenly(episodes, count)
        remote = ray.remote(CollectWorker)
        actors = [remote.options(num_cpus=worker_cpus,
                                 scheduling_strategy=placement.scheduling(pg, plan.worker_bundle(i))
                                 ).remote(run.to_dict(), i, quotas[i], out, num_envs=envs_per_worker,
                                          seed=seed, checkpoint=checkpoint, max_steps=max_steps,
                                          steps_per_shard=steps_per_shard, cpus=worker_cpus)
                  for i in range(count)]
        progress = _Progress(episodes, count, verbose)
        progress.say(f"[distwm] collect {meta['env']!r} ({policy} policy): {episodes:,d} episodes "
                     f"with {count} workers x {envs_per_worker} envs -> {out}")
        shards = _drive(actors, progress, collect_seconds, progress_seconds)
        missing = [s["file"] for s in shards if not os.path.isfile(os.path.join(out, s["file"]))]
        if missing:
            raise RuntimeError(
                f"{len(missing)} shard files ({missing[0]}, ...) are not in {out} on the driver's "
                "node: the workers wrote them on other nodes; use an --out every node mounts")
        meta = {**meta, "policy": RANDOM_POLICY if checkpoint is None else checkpoint,
                "workers": count, "envs_per_worker": envs_per_worker, "seed": seed,
                "max_steps": max_steps}
        path = write_manifest(out, shards, meta)
        manifest = read_manifest(out)
        seconds = time.monotonic() - progress.start
        progress.say(f"[distwm] collected {manifest['episodes']:,d} episodes, "
                     f"{manifest['steps']:,d} steps in {len(shards)} files "
                     f"({progress.steps / max(seconds, 1e-9):,.1f} env steps/s): {path}")
        return CollectResult(out, manifest, seconds, progress.history)
    finally:
        for actor in actors:
            kill_actor(actor)
        if pg is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(pg)
        if started_ray:
            ray.shutdown()


def _drive(actors: list[Any], progress: _Progress, collect_seconds: float,
           progress_seconds: float) -> list[dict]:
    """Keep every worker collecting until its episodes are written, then close it; returns
    the shard entries of all workers in worker order. A failed worker fails the collection."""
    import ray

    ray.get([a.setup.remote() for a in actors])  # a bad env or checkpoint fails here, at once
    calls = {a.collect.remote(collect_seconds): i for i, a in enumerate(actors)}
    closing: dict[int, Any] = {}
    next_tick = time.monotonic() + progress_seconds
    while calls:
        ready, _ = ray.wait(list(calls), num_returns=1,
                            timeout=max(next_tick - time.monotonic(), 0.0))
        for ref in ready:
            index = calls.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:
                raise RuntimeError(f"collect worker {index} failed; the dataset has no manifest "
                                   f"(run again with --overwrite): {exc}") from exc
            progress.add(result)
            if result["done"]:
                closing[index] = actors[index].close.remote()
            else:
                calls[actors[index].collect.remote(collect_seconds)] = index
        if time.monotonic() >= next_tick:
            progress.line(len(calls))
            next_tick = time.monotonic() + progress_seconds
    progress.line(0)
    return [s for i in range(len(actors)) for s in ray.get(closing[i])]


# -- the command -------------------------------------------------------------------------------

def add_collect_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``collect`` subcommand to ``distwm``'s subparsers."""
    from distwm.runtime.cli import _workers

    p = subparsers.add_parser(
        "collect", help="collect a pixel dataset (sharded HDF5 + manifest) with env workers on Ray",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", help="environment id (see `distwm envs`); default with a checkpoint "
                                 "policy: the run's env")
    p.add_argument("--workers", type=_workers, default="auto",
                   help="collector actors, or 'auto' (one per free CPU; at most one per episode)")
    p.add_argument("--envs-per-worker", type=int, default=1, dest="envs_per_worker",
                   help="envs each worker steps in lockstep")
    p.add_argument("--episodes", type=int, required=True, help="whole episodes to collect in all")
    p.add_argument("--max-steps", type=int, dest="max_steps",
                   help="end an episode (truncated) after this many env steps")
    p.add_argument("--out", required=True, metavar="DATA", help="the dataset directory")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the dataset already in DATA (its manifest and shard files)")
    p.add_argument("--policy", default=RANDOM_POLICY, metavar="random|CHECKPOINT",
                   help="'random' (uniform actions), or a distwm RL run directory or checkpoint "
                        "directory whose agent acts (explore=True)")
    p.add_argument("--seed", type=int, default=0, help="seed the env seeds derive from")
    p.add_argument("--steps-per-shard", type=int, default=10_000, dest="steps_per_shard",
                   help="steps per HDF5 file")
    p.add_argument("--worker-cpus", type=float, default=1.0, dest="worker_cpus",
                   help="CPUs each worker reserves")
    p.add_argument("--address", help="Ray address ('auto', ray://host:10001); default RAY_ADDRESS "
                                     "or a new local instance")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="an env field (image_size=64, obs_type=both, env_kwargs={...}, "
                        "env_backend=atari) or runtime.env_factory=module:fn")
    p.set_defaults(func=cmd_collect)
    return p


def cmd_collect(args: argparse.Namespace) -> int:
    result = collect(args.env, args.out, args.episodes, workers=args.workers,
                     envs_per_worker=args.envs_per_worker, max_steps=args.max_steps,
                     policy=args.policy, seed=args.seed, steps_per_shard=args.steps_per_shard,
                     overrides=args.overrides, overwrite=args.overwrite, address=args.address,
                     worker_cpus=args.worker_cpus)
    print(f"dataset: {result.out} ({result.episodes} episodes, {result.steps} steps)")
    return 0
