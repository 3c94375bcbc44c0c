"""The ``Learner`` actor: trains the agent on replay batches, publishes weights, checkpoints.

Weights go out as one ``ray.put`` every ``broadcast_interval`` updates; the driver hands the
``(version, [ref])`` pair to the env workers, which fetch it when the version is new.

A checkpoint is a directory ``checkpoints/ckpt-<updates>`` with ``learner.pt`` (agent state,
counters; ``torch.load(..., weights_only=True)``) and one snapshot per replay shard, written under
a temporary name and renamed when complete; ``checkpoints/latest`` names the newest.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Any, Mapping, Sequence

from distwm.loop.schedule import Cadence
from distwm.runtime.batch_fetcher import SampleFetcher
from distwm.loop.env_loop import build_agent, limit_torch_threads

__all__ = ["Learner", "latest_checkpoint", "load_checkpoint", "write_checkpoint"]

_log = logging.getLogger(__name__)

CHECKPOINT_FILE = "learner.pt"
LATEST = "latest"


def latest_checkpoint(run_dir: str) -> str | None:
    """The newest complete checkpoint directory of a run, or ``None``."""
    root = os.path.join(run_dir, "checkpoints")
    try:
        with open(os.path.join(root, LATEST)) as f:
            path = os.path.join(root, f.read().strip())
    except FileNotFoundError:
        return None
    return path if os.path.isfile(os.path.join(path, CHECKPOINT_FILE)) else None


def load_checkpoint(path: str) -> dict[str, Any]:
    """``learner.pt`` of a checkpoint directory (``weights_only=True``)."""
    import torch

    return torch.load(os.path.join(path, CHECKPOINT_FILE), map_location="cpu", weights_only=True)


def shard_snapshot_name(index: int, fmt: str) -> str:
    return f"shard_{index}.{'h5' if fmt == 'hdf5' else 'npz'}"


def write_checkpoint(run_dir: str, name: str, state: Mapping[str, Any], shards: Sequence[Any],
                     snapshot_format: str = "npz", keep: int = 2) -> str:
    """Write a checkpoint directory atomically (shard snapshots in parallel); prune old ones."""
    import ray
    import torch

    root = os.path.join(run_dir, "checkpoints")
    final = os.path.join(root, name)
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    refs = [s.save.remote(os.path.join(tmp, shard_snapshot_name(i, snapshot_format)))
            for i, s in enumerate(shards)]
    torch.save(dict(state), os.path.join(tmp, CHECKPOINT_FILE))
    for ref in refs:  # a shard that died meanwhile has no snapshot here: it is restored from
        try:          # the previous one, and the driver restarts it
            ray.get(ref)
        except ray.exceptions.RayActorError:
            _log.warning("a replay shard died while the checkpoint %s was written", name)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    with open(os.path.join(root, LATEST + ".tmp"), "w") as f:
        f.write(name)
    os.replace(os.path.join(root, LATEST + ".tmp"), os.path.join(root, LATEST))
    done = sorted(d for d in os.listdir(root) if d.startswith("ckpt-") and not d.endswith(".tmp"))
    for old in done[:-keep]:
        shutil.rmtree(os.path.join(root, old), ignore_errors=True)
    return final


class Learner:
    """Trains ``AGENT_CLASS.from_config(...)`` on batches from the replay shards.

    Args:
        run_config: ``RunConfig.to_dict()``.
        observation_space, action_space: the env's spaces (from the driver's probe env).
        device: ``"cuda"`` when the actor holds a GPU, else ``"cpu"``.
        run_dir: where checkpoints go.
        cpus: CPUs of the actor (torch threads).

    Its batches are the agent's named samples (``agent.data_spec()``); update ``k`` gets the
    samples ``spec.due(k)`` names. It checkpoints every ``runtime.checkpoint_interval`` env
    steps (the driver's counters come with every ``train`` call).
    """

    def __init__(self, run_config: Mapping[str, Any], observation_space: Any, action_space: Any,
                 device: str, run_dir: str, cpus: float = 1.0):
        self._run_config = dict(run_config)
        self._spaces = (observation_space, action_space)
        self.device = device
        self.run_dir = run_dir
        self._cpus = cpus
        self.fetcher: SampleFetcher | None = None
        self.checkpoint_cadence: Cadence | None = None
        self.last_batches: dict[str, Any] = {}
        self.agent = None
        self.updates = 0
        self.version = 0
        self._returned_version = -1
        self._weights_ref = None
        self.update_time = 0.0
        self.counters: dict[str, Any] = {}
        self.checkpoint_path: str | None = None

    def setup(self, min_version: int = 0) -> dict[str, Any]:
        """Build the agent and publish version ``min_version`` of its weights."""
        if self.agent is None:
            from distwm.configs.runtime_config import RunConfig

            limit_torch_threads(self._cpus)
            run = RunConfig.from_dict(self._run_config)
            self.runtime = run.runtime
            self.agent = build_agent(run.build_agent_config(), *self._spaces, self.device)
            self.fetcher = SampleFetcher(self.agent.data_spec(), run.runtime.sample_timeout)
            self.checkpoint_cadence = Cadence(run.runtime.checkpoint_interval,
                                              int(self.counters.get("env_steps", 0)))
            self.version = max(self.version, min_version)
            self._publish(bump=False)
        return {"device": self.device, "updates": self.updates, "version": self.version}

    def _publish(self, bump: bool = True) -> None:
        import ray

        if bump:
            self.version += 1
        self._weights_ref = ray.put(self.agent.get_weights())

    def restore(self, path: str, min_version: int = 0, min_updates: int = 0) -> dict[str, Any]:
        """Load a checkpoint directory's agent state and counters.

        Counters never go back: weights are republished with a version above ``min_version``,
        and ``updates`` (updates performed, which the replay ratio accounts for) stays at least
        ``min_updates`` even when the updates after the checkpoint were lost with a dead learner.
        """
        self.setup()
        state = load_checkpoint(path)
        self.agent.load_state_dict(state["agent"])
        self.updates = max(int(state["updates"]), int(min_updates))
        self.counters = dict(state.get("counters", {}))
        self.checkpoint_cadence = Cadence(self.runtime.checkpoint_interval,
                                          int(self.counters.get("env_steps", 0)))
        self.version = max(int(state["version"]), min_version) + 1
        self._publish(bump=False)
        self.checkpoint_path = path
        return {"updates": self.updates, "checkpoint_updates": int(state["updates"]),
                "version": self.version, "counters": self.counters}

    def _env_steps(self) -> int:
        """The checkpoint cadence's clock: the driver's count at the call, or what the shards
        have received since (their stats come with every sample)."""
        inserted = sum(int(s.get("inserted", 0)) for s in self.fetcher.stats.values())
        return max(int(self.counters.get("env_steps", 0)), inserted)

    def report(self) -> dict[str, Any] | None:
        """``agent.report(batch)`` on the last batch of the agent's first sample (open-loop
        predictions beside the real frames), or ``None`` if the agent has no ``report`` (or it
        failed: said in the learner's log)."""
        report = getattr(self.agent, "report", None)
        if report is None or not self.last_batches:
            return None
        name = self.agent.data_spec().names[0]
        batch = self.last_batches.get(name) or next(iter(self.last_batches.values()))
        try:
            return report(batch)
        except Exception as exc:  # a report is for people to look at: it never ends a run
            _log.warning("the agent's report(batch) failed, no open-loop media: %s: %s",
                         type(exc).__name__, exc)
            return None

    def weights(self) -> tuple[int, list]:
        """``(version, [ref])`` of the latest published weights."""
        return self.version, [self._weights_ref]

    def checkpoint(self, shards: Sequence[Any], counters: Mapping[str, Any] | None = None) -> str:
        """Write agent state, counters and shard snapshots now."""
        self.setup()
        if counters is not None:
            self.counters = dict(counters)
        state = {"agent": self.agent.state_dict(), "updates": self.updates,
                 "version": self.version, "counters": self.counters}
        self.checkpoint_path = write_checkpoint(
            self.run_dir, f"ckpt-{self.updates:09d}", state, shards,
            self.runtime.snapshot_format, self.runtime.keep_checkpoints)
        return self.checkpoint_path

    def train(self, shards: Sequence[Any], max_updates: int, max_seconds: float,
              counters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Up to ``max_updates`` updates within about ``max_seconds``.

        Returns counters, mean agent metrics, timing (``wait_time``: waiting for data), new
        weights ``(version, [ref])`` if published since the last call, the path of a
        checkpoint written during the call with the agent's :meth:`report` at that point, and
        ``starved`` when data ran short.
        """
        self.setup()
        if counters is not None:
            self.counters = dict(counters)
        self.fetcher.set_shards(shards)
        start = time.monotonic()
        deadline = start + max_seconds
        wait0, done, starved = self.fetcher.wait_time, 0, False
        sums: dict[str, float] = {}
        checkpoint = media = None
        while done < max_updates and time.monotonic() < deadline:
            batches = self.fetcher.next_batches(self.updates, deadline)
            if batches is None:
                starved = True
                break
            t0 = time.monotonic()
            metrics = self.agent.update(batches)
            self.last_batches = batches
            self.update_time += time.monotonic() - t0
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            done += 1
            self.updates += 1
            if self.updates % self.runtime.broadcast_interval == 0:
                self._publish()
            if not self.fetcher.dead and self.checkpoint_cadence.due(self._env_steps()):
                checkpoint = self.checkpoint(shards)
                media = self.report()
        result = {
            "updates": self.updates, "done": done, "version": self.version,
            "metrics": {k: v / done for k, v in sums.items()} if done else {},
            "wait_time": self.fetcher.wait_time - wait0, "seconds": time.monotonic() - start,
            "starved": starved, "dead_shards": sorted(self.fetcher.dead),
            "shard_stats": dict(self.fetcher.stats), "checkpoint": checkpoint,
            "report": media, "weights": None,
        }
        if self.version != self._returned_version:
            result["weights"] = (self.version, [self._weights_ref])
            self._returned_version = self.version
        return result
