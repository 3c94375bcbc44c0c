"""The ``Learner`` actor: trains the agent on replay batches, publishes weights, checkpoints.

Weights go out as one ``ray.put`` every ``broadcast_interval`` updates; the driver hands the
``(version, [ref])`` pair to the env workers, which fetch it when the version is new.

With ``runtime.learners = N > 1`` the N learners form one ``torch.distributed`` group
(:mod:`distwm.utils.distributed`; gloo on CPU, NCCL on GPU): each samples its own batches,
the agent averages gradients over the group inside ``update`` (so the replicas stay equal), the
ranks agree before every update that all of them have data, and rank 0 alone publishes weights,
checkpoints and reports.

Checkpoints (:mod:`distwm.runtime.checkpoints`): the first right after the first update, then
every ``checkpoint_interval`` env steps or ``checkpoint_seconds``, whichever comes first.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Mapping, Sequence

import numpy as np

from distwm.loop.env_loop import build_agent, derive_seed, limit_torch_threads
from distwm.loop.schedule import Cadence
from distwm.runtime.batch_fetcher import SampleFetcher
from distwm.runtime.checkpoints import (CHECKPOINT_FILE, LATEST, latest_checkpoint,  # noqa: F401
                                        load_checkpoint, write_checkpoint)

__all__ = ["Learner", "latest_checkpoint", "load_checkpoint", "write_checkpoint"]

_log = logging.getLogger(__name__)


class Learner:
    """Trains ``AGENT_CLASS.from_config(...)`` on batches from the replay shards.

    Args:
        run_config: ``RunConfig.to_dict()``.
        observation_space, action_space: the env's spaces (from the driver's probe env).
        device: ``"cuda"`` when the actor holds a GPU, else ``"cpu"``.
        run_dir: where checkpoints go (path or URI).
        cpus: CPUs of the actor (torch threads).
        rank, world_size: place in the data-parallel group (``world_size`` 1: no group).

    Its batches are the agent's named samples (``agent.data_spec()``); update ``k`` gets the
    samples ``spec.due(k)`` names. The driver's counters come with every ``train`` call.
    """

    def __init__(self, run_config: Mapping[str, Any], observation_space: Any, action_space: Any,
                 device: str, run_dir: str, cpus: float = 1.0, rank: int = 0, world_size: int = 1):
        self._run_config = dict(run_config)
        self._spaces = (observation_space, action_space)
        self.device = device
        self.run_dir = run_dir
        self._cpus = cpus
        self.rank, self.world_size = int(rank), int(world_size)
        self.fetcher: SampleFetcher | None = None
        self._shards: list[Any] = []
        self.checkpoint_cadence: Cadence | None = None
        self.last_checkpoint_time = 0.0
        self.last_batches: dict[str, Any] = {}
        self._held: dict[str, Any] | None = None  # batches fetched but not used (group said wait)
        self.agent = None
        self.updates = 0
        self.agent_updates_at_start = 0
        self.version = 0
        self._returned_version = -1
        self._weights_ref = None
        self.update_time = 0.0
        self.counters: dict[str, Any] = {}
        self.checkpoint_path: str | None = None

    # -- set-up ----------------------------------------------------------------------------
    def group_address(self) -> str:
        """``tcp://ip:port`` for the group's rendezvous (asked of rank 0)."""
        from distwm.utils.distributed import free_address

        return free_address()

    def weights_digest(self) -> str:
        """A hash of the agent's weights (replicas of a group must agree)."""
        import hashlib

        digest = hashlib.sha256()
        for key, value in sorted(self.agent.get_weights().items()):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(value.detach().cpu().numpy() if hasattr(value, "detach")
                                               else np.asarray(value)).tobytes())
        return digest.hexdigest()

    def setup(self, min_version: int = 0, min_updates: int = 0,
              group_address: str | None = None) -> dict[str, Any]:
        """Build the agent (first call only), join the group, publish version ``min_version``.

        ``updates`` (performed, which the replay ratio accounts for) never goes below
        ``min_updates``: a fresh learner that replaces a dead one continues the count."""
        if self.fetcher is None:
            self._build()
            self._reset_cadence()
            self.updates = max(self.updates, int(min_updates))
            self.version = max(self.version, min_version)
            if self.world_size > 1:
                self._join_group(group_address)
            if self.rank == 0:
                self._publish(bump=False)
        return {"device": self.device, "updates": self.updates, "version": self.version,
                "checkpoint_updates": 0}

    def _build(self) -> None:
        from distwm.configs.runtime_config import RunConfig

        limit_torch_threads(self._cpus)
        run = RunConfig.from_dict(self._run_config)
        self.runtime = run.runtime
        self.agent = build_agent(run.build_agent_config(), *self._spaces, self.device)
        self.fetcher = SampleFetcher(self.agent.data_spec(), run.runtime.sample_timeout)

    def _join_group(self, address: str | None) -> None:
        from distwm.utils import distributed

        if address is None:
            raise ValueError(f"learner rank {self.rank} of {self.world_size} needs the group address")
        distributed.init_group(self.rank, self.world_size, address,
                               timeout_s=self.runtime.learner_group_timeout)
        # replicas start from rank 0's whole state (parameters, optimiser moments, counters)
        if self.rank == 0:
            distributed.broadcast_object(self.agent.state_dict(), src=0)
        else:
            self.agent.load_state_dict(distributed.broadcast_object(None, src=0))
        import torch

        # equal weights, but each rank draws its own latent and imagination noise
        seed = int(self._run_config.get("agent", {}).get("seed", 0))
        torch.manual_seed(derive_seed(seed, 5, self.rank, int(self.counters.get("epoch", 0))))

    def _reset_cadence(self) -> None:
        self.checkpoint_cadence = Cadence(self.runtime.checkpoint_interval,
                                          int(self.counters.get("env_steps", 0)))
        self.last_checkpoint_time = time.monotonic()

    def _publish(self, bump: bool = True) -> None:
        import ray

        if bump:
            self.version += 1
        self._weights_ref = ray.put(self.agent.get_weights())

    def restore(self, path: str, min_version: int = 0, min_updates: int = 0,
                group_address: str | None = None) -> dict[str, Any]:
        """Load a checkpoint directory's agent state and counters, then join the group.

        Counters never go back: weights are republished with a version above ``min_version``,
        and ``updates`` stays at least ``min_updates`` even when the updates after the
        checkpoint were lost with a dead learner (``checkpoint_updates`` says how many the
        agent really has; the driver counts the difference as redone)."""
        state = load_checkpoint(path)
        self.counters = dict(state.get("counters", {}))
        self.updates = max(int(state["updates"]), int(min_updates))
        self.version = max(int(state["version"]), min_version) + 1
        if self.fetcher is None:
            self._build()
        self.agent.load_state_dict(state["agent"])
        self._reset_cadence()
        if self.world_size > 1:
            self._join_group(group_address)
        if self.rank == 0:
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

    def checkpoint(self, counters: Mapping[str, Any] | None = None) -> str | None:
        """Write agent state and counters now (rank 0; other ranks return ``None``)."""
        self.setup()
        if counters is not None:
            self.counters = dict(counters)
        if self.rank != 0:
            return None
        state = {"agent": self.agent.state_dict(), "updates": self.updates,
                 "version": self.version, "counters": self.counters}
        self.checkpoint_path = write_checkpoint(self.run_dir, f"ckpt-{self.updates:09d}", state,
                                                self.runtime.keep_checkpoints)
        self.checkpoint_cadence.due(self._env_steps())  # the next one is an interval away
        self.last_checkpoint_time = time.monotonic()
        return self.checkpoint_path

    def _checkpoint_due(self) -> bool:
        """First after the first update of this learner, then every ``checkpoint_interval``
        env steps or ``checkpoint_seconds``, whichever comes first."""
        if self.rank != 0:
            return False
        if self.checkpoint_path is None:
            return True
        seconds = self.runtime.checkpoint_seconds
        return (self.checkpoint_cadence.due(self._env_steps())
                or (seconds > 0 and time.monotonic() - self.last_checkpoint_time >= seconds))

    def _next_batches(self, go: bool, deadline: float) -> dict[str, Any] | None:
        """This rank's batches for the next update, or ``None`` to stop; in a group every
        rank stops unless all of them have batches (a rank's unused batches are kept)."""
        batches = None
        if go:
            batches = self._held or self.fetcher.next_batches(self.updates, deadline)
            self._held = None
        if self.world_size == 1:
            return batches
        from distwm.utils import distributed

        if distributed.all_agree(batches is not None):
            return batches
        self._held = batches
        return None

    def _write_back(self, batches: Mapping[str, Any]) -> None:
        """Send the entries the update rewrote (``agent.replay_updates()``) to the shards the
        rows came from; not waited for (a shard that died meanwhile keeps its old entries)."""
        take = getattr(self.agent, "replay_updates", None)
        updates = take() if take is not None else None
        for name, values in (updates or {}).items():
            rows = np.asarray(batches[name]["shard"])
            for shard in np.unique(rows):
                if int(shard) in self.fetcher.dead:
                    continue
                pick = rows == shard
                self._shards[int(shard)].update.remote(
                    values["stepid"][pick], {k: v[pick] for k, v in values.items() if k != "stepid"})

    def train(self, shards: Sequence[Any], max_updates: int, max_seconds: float,
              counters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Up to ``max_updates`` updates within about ``max_seconds``.

        Returns counters, mean agent metrics, timing (``wait_time``: waiting for data), new
        weights ``(version, [ref])`` if published since the last call, the path of a
        checkpoint written during the call with the agent's :meth:`report` at that point, and
        ``starved`` when data ran short. Every rank of a group must get the same call.
        """
        self.setup()
        if counters is not None:
            self.counters = dict(counters)
        self.fetcher.set_shards(shards)
        self._shards = list(shards)
        start = time.monotonic()
        deadline = start + max_seconds
        wait0, done, starved = self.fetcher.wait_time, 0, False
        sums: dict[str, float] = {}
        checkpoint = media = None
        while True:
            go = done < max_updates and time.monotonic() < deadline
            batches = self._next_batches(go, deadline)
            if batches is None:
                starved = go
                break
            t0 = time.monotonic()
            metrics = self.agent.update(batches)
            self._write_back(batches)
            self.last_batches = batches
            self.update_time += time.monotonic() - t0
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            done += 1
            self.updates += 1
            if self.rank == 0 and self.updates % self.runtime.broadcast_interval == 0:
                self._publish()
            if self._checkpoint_due():
                checkpoint = self.checkpoint()
                media = self.report()
        result = {
            "rank": self.rank, "pid": os.getpid(), "updates": self.updates, "done": done,
            "version": self.version,
            "metrics": {k: v / done for k, v in sums.items()} if done else {},
            "wait_time": self.fetcher.wait_time - wait0, "seconds": time.monotonic() - start,
            "starved": starved, "dead_shards": sorted(self.fetcher.dead),
            "shard_stats": dict(self.fetcher.stats), "checkpoint": checkpoint,
            "report": media, "weights": None,
        }
        if self.rank == 0 and self.version != self._returned_version:
            result["weights"] = (self.version, [self._weights_ref])
            self._returned_version = self.version
        return result
