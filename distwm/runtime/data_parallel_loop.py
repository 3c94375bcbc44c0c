"""What runs inside Ray Train: the per-worker loop of the data-parallel path, the controller
callback that forwards reports to the driver, and the trainer itself (``TorchTrainer``).

The driver (:mod:`distwm.runtime.data_parallel`) never imports this module: the trainer is built
and fitted by one zero-CPU Ray task (:func:`fit_trainer`), so the driver process stays
torch-free. Everything the workers need comes in one plain ``plan`` dict (the
``train_loop_config``): the run config, the model's config and protocol classes as import paths
(a plugin registered in the driver only is still found), the data set (``data``) and its
``dataset_info``, the run seed and the driver's queue.

Per worker (:func:`train_loop_per_worker`): build the Trainable
(``Class.from_config(config, dataset_info, device)``), open this rank's share of the data
(:func:`distwm.datasets.training_data.open_training_data`: a shard directory's files round
robin, an image data set's rows ``rank::world_size``) for each sample of its ``data_spec()``,
restore ``ray.train.get_checkpoint()`` or copy rank 0's fresh state to every rank, then update
on batches drawn by a seeded generator (``(seed, rank, updates at start)``: a resumed run draws
new batches; the next batches are read while this update runs). Every ``report_interval``
updates every rank calls ``ray.train.report`` (a barrier) with its mean metrics; every
``checkpoint_interval`` updates and at the end rank 0 also hands Ray Train a checkpoint
(``learner.pt`` in the runtime's checkpoint format, :mod:`distwm.runtime.checkpoints`) and the
driver the model's ``report`` media (on :data:`REPORT_ROWS` held-out rows, or the Trainable's
``report_rows``, when the data set has a test split; else on the last batch of the first
sample), and every rank reports a fingerprint of its whole state (the replicas must agree).
A bad config or data set fails at set-up with a ``ValueError`` that is sent to the driver as
``fatal`` (a restart would fail the same way); other errors are left to ``FailureConfig``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

import numpy as np

__all__ = ["DriverQueueCallback", "WorkerLoop", "build_torch_trainer", "fit_trainer",
           "state_fingerprint", "train_loop_per_worker"]

_log = logging.getLogger(__name__)

#: the name Ray Train gives the run inside the run directory (``<run_dir>/train``)
TRAIN_DIR = "train"
#: held-out rows rank 0 hands ``trainable.report`` (unless the Trainable sets ``report_rows``)
REPORT_ROWS = 512


def state_fingerprint(state: Any) -> str:
    """SHA-256 of a (nested) state dict: every tensor's dtype, shape and bytes and every plain
    value, in key order. Equal on two ranks iff their states are bitwise equal."""
    import torch

    digest = hashlib.sha256()

    def visit(prefix: str, obj: Any) -> None:
        if isinstance(obj, Mapping):
            for key in sorted(obj, key=str):
                visit(f"{prefix}/{key}", obj[key])
        elif isinstance(obj, (list, tuple)):
            for i, item in enumerate(obj):
                visit(f"{prefix}/{i}", item)
        elif torch.is_tensor(obj):
            flat = obj.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{prefix}:{flat.dtype}:{tuple(obj.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        else:
            digest.update(f"{prefix}={obj!r}".encode())

    visit("", state)
    return digest.hexdigest()


# -- the worker loop ----------------------------------------------------------------------------

class WorkerLoop:
    """One rank's training (see the module docstring); built by :meth:`setup`."""

    def __init__(self, plan: Mapping[str, Any], rank: int, world_size: int):
        self.plan, self.rank, self.world_size = plan, rank, world_size
        run = plan["run"]["data_parallel"]
        self.total, self.report_every = int(run["total_updates"]), int(run["report_interval"])
        self.checkpoint_every = int(run["checkpoint_interval"])
        self.queue = plan["queue"]
        self.trainable: Any = None
        self.spec: Any = None
        self.datasets: dict[str, Any] = {}
        self.updates = self.start_updates = 0
        self.restored_from: str | None = None
        self.device = "cpu"
        self.last_batches: dict[str, Any] = {}
        self.report_batch: dict[str, Any] | None = None  # held-out rows for report(), if any
        self._window: dict[str, Any] = {}

    def setup(self) -> None:
        """Build the model and this rank's datasets, restore or synchronise the replicas."""
        import torch

        import ray.train
        from distwm.agent import import_object
        from distwm.datasets.training_data import open_training_data
        from distwm.loop.env_loop import limit_torch_threads
        from distwm.registry import apply_overrides

        plan = self.plan
        limit_torch_threads(plan["cpus_per_worker"])
        if plan["use_gpu"]:
            import ray.train.torch

            self.device = str(ray.train.torch.get_device())
        torch.manual_seed(plan["seed"])
        config = apply_overrides(import_object(plan["config_path"])(), plan["run"]["model_config"])
        self.trainable = import_object(plan["protocol_path"]).from_config(
            config, plan["dataset_info"], device=self.device)
        self.spec = self.trainable.data_spec()
        opened: dict[int, Any] = {}  # one per clip length
        for sample in self.spec.samples:
            if sample.seq_len not in opened:
                opened[sample.seq_len] = open_training_data(plan["data"], sample.seq_len,
                                                            self.rank, self.world_size)
            data = opened[sample.seq_len]
            if len(data) == 0:
                raise ValueError(
                    f"rank {self.rank}: its shard files {data.files} hold no clip of "
                    f"{sample.seq_len} steps inside one episode (sample {sample.name!r}): use "
                    "fewer workers, a shorter clip length, or a data set with longer episodes")
            self.datasets[sample.name] = data
        if self.rank == 0 and getattr(self.trainable, "report", None) is not None:
            rows = int(getattr(self.trainable, "report_rows", 0) or REPORT_ROWS)
            self.report_batch = self.datasets[self.spec.names[0]].holdout(rows)
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            self._restore(checkpoint)
        else:
            from distwm.utils.distributed import broadcast_object

            state = broadcast_object(self.trainable.state_dict() if self.rank == 0 else None)
            if self.rank != 0:
                self.trainable.load_state_dict(state)

    def _restore(self, checkpoint: Any) -> None:
        from distwm.runtime.checkpoints import load_checkpoint

        with checkpoint.as_directory() as path:
            state = load_checkpoint(path)
        self.trainable.load_state_dict(state["agent"])
        self.updates = self.start_updates = int(state["updates"])
        self.restored_from = checkpoint.path

    # -- batches ---------------------------------------------------------------------------
    def _draw(self, rng: np.random.Generator, update_index: int) -> dict[str, Any]:
        """The batches update ``update_index`` carries, ``{sample name: (B, T, ...) arrays}``."""
        out = {}
        for name in self.spec.due(update_index):
            data = self.datasets[name]
            indices = rng.integers(0, len(data), self.spec.sample(name).batch_size)
            out[name] = data.batch(indices)
        return out

    def _frames(self, batches: Mapping[str, Any]) -> int:
        return sum(self.spec.sample(name).steps for name in batches)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        rng = np.random.default_rng([int(self.plan["seed"]), self.rank, self.start_updates])
        batches = ", ".join(f"{s.name} {s.batch_size}x{s.seq_len}" for s in self.spec.samples)
        self._put({"kind": "start", "rank": self.rank, "updates": self.updates,
                   "restored_from": self.restored_from, "pid": os.getpid(), "device": self.device,
                   "batches": batches})
        self._new_window()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="distwm-batches") as pool:
            pending = pool.submit(self._draw, rng, self.updates) if self.updates < self.total else None
            while pending is not None:
                wait0 = time.monotonic()
                batches = pending.result()
                self._window["data_wait"] += time.monotonic() - wait0
                nxt = self.updates + 1
                pending = pool.submit(self._draw, rng, nxt) if nxt < self.total else None
                metrics = self.trainable.update(batches)
                self.updates += 1
                self.last_batches = batches
                self._accumulate(metrics, self._frames(batches))
                checkpoint = self.updates % self.checkpoint_every == 0 or self.updates == self.total
                if checkpoint or self.updates % self.report_every == 0:
                    self._report(checkpoint)

    def _new_window(self) -> None:
        self._window = {"t": time.monotonic(), "updates": 0, "frames": 0, "data_wait": 0.0, "sums": {}}

    def _accumulate(self, metrics: Mapping[str, Any], frames: int) -> None:
        w = self._window
        w["updates"] += 1
        w["frames"] += frames
        for key, value in (metrics or {}).items():
            total, count = w["sums"].get(key, (0.0, 0))
            w["sums"][key] = (total + float(value), count + 1)

    def _report(self, checkpoint: bool) -> None:
        import ray.train

        w = self._window
        metrics: dict[str, Any] = {
            "updates": self.updates, "rank": self.rank, "window_updates": w["updates"],
            "window_seconds": time.monotonic() - w["t"], "window_frames": w["frames"],
            "data_wait_seconds": w["data_wait"], "start_updates": self.start_updates,
            **{f"train/{k}": total / count for k, (total, count) in w["sums"].items()},
        }
        name = f"ckpt-{self.updates:09d}"
        if not checkpoint:
            ray.train.report(metrics)
            self._new_window()
            return
        state = self.trainable.state_dict()
        metrics["fingerprint"] = state_fingerprint(state)
        if self.rank != 0:
            ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=name)
        else:
            from distwm.runtime.checkpoints import CHECKPOINT_FILE
            from distwm.utils.checkpoint import save_file

            with tempfile.TemporaryDirectory(prefix="distwm-ckpt-") as tmp:
                save_file({"agent": state, "updates": self.updates, "version": self.updates,
                           "counters": {"updates": self.updates}}, os.path.join(tmp, CHECKPOINT_FILE))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                                 checkpoint_dir_name=name)
            media = self._media()
            if media:
                self._put({"kind": "media", "updates": self.updates, "report": media})
        self._new_window()

    def _media(self) -> dict[str, Any] | None:
        """``trainable.report(batch)`` on the held-out rows (when the data set has a test
        split) or the last batch of the first sample, or None (no ``report``, or it failed: a
        report never ends a run)."""
        report = getattr(self.trainable, "report", None)
        if report is None or not (self.report_batch or self.last_batches):
            return None
        batch = self.report_batch or self.last_batches.get(self.spec.names[0]) or \
            next(iter(self.last_batches.values()))
        try:
            return report(batch)
        except Exception as exc:
            _log.warning("the model's report(batch) failed, no media: %s: %s", type(exc).__name__, exc)
            return None

    def _put(self, item: Mapping[str, Any]) -> None:
        if self.queue is not None:
            self.queue.put(dict(item))


def _quiet_report_log() -> None:
    """Ray Train logs every ``ray.train.report`` with all its metrics at INFO; the driver's
    progress line already shows them. Its logger is named after its file (Ray 2.60)."""
    import logging

    try:
        from ray.train.v2._internal.execution import context as train_context
    except ImportError:  # another Ray layout: leave its logging alone
        return
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)


def train_loop_per_worker(plan: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker`` (``plan``: see the module docstring)."""
    import ray.train

    _quiet_report_log()
    context = ray.train.get_context()
    loop = WorkerLoop(plan, context.get_world_rank(), context.get_world_size())
    try:
        loop.setup()
    except ValueError as exc:  # the config or the data: a restart would fail the same way
        loop._put({"kind": "fatal", "rank": loop.rank, "error": str(exc)})
        raise
    loop.run()


# -- the trainer -------------------------------------------------------------------------------

def _callback_base() -> type:
    from ray.train.v2.api.callback import UserCallback

    return UserCallback


class DriverQueueCallback(_callback_base()):
    """Runs in Ray Train's controller: every report of the workers (all ranks' metrics and the
    persisted checkpoint's path) and every worker-group failure goes into the driver's queue."""

    def __init__(self, queue: Any):
        self.queue = queue

    def after_report(self, run_context: Any, metrics: list, checkpoint: Any) -> None:
        self.queue.put({"kind": "report", "metrics": [dict(m) for m in metrics],
                        "checkpoint": None if checkpoint is None else checkpoint.path})

    def after_exception(self, run_context: Any, worker_exceptions: Mapping[int, Exception]) -> None:
        self.queue.put({"kind": "failure",
                        "errors": {int(r): f"{type(e).__name__}: {e}" for r, e in worker_exceptions.items()}})


def build_torch_trainer(plan: dict[str, Any]) -> Any:
    """The ``TorchTrainer`` of a plan: DDP workers (gloo on CPU, NCCL on GPU) running
    :func:`train_loop_per_worker`, checkpoints under ``<run_dir>/train``, restarts from the last
    checkpoint up to ``max_failures`` times."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    run = plan["run"]["data_parallel"]
    resources = {"CPU": float(plan["cpus_per_worker"])}
    if plan["use_gpu"]:
        resources["GPU"] = float(plan["gpus_per_worker"])
    callbacks = [DriverQueueCallback(plan["queue"])] if plan["queue"] is not None else []
    return TorchTrainer(
        train_loop_per_worker, train_loop_config=plan,
        scaling_config=ScalingConfig(num_workers=int(plan["workers"]), use_gpu=bool(plan["use_gpu"]),
                                     resources_per_worker=resources),
        run_config=RunConfig(name=TRAIN_DIR, storage_path=plan["run_dir"],
                             failure_config=FailureConfig(max_failures=int(run["max_failures"])),
                             checkpoint_config=CheckpointConfig(num_to_keep=int(run["keep_checkpoints"])),
                             callbacks=callbacks))


def fit_trainer(plan: dict[str, Any]) -> dict[str, Any]:
    """Build and fit the trainer; the result as plain values (the driver imports no torch):
    ``{"checkpoint": path or None, "metrics": rank 0's last report}``. A run that failed for
    good raises ``RuntimeError`` naming the error."""
    result = build_torch_trainer(plan).fit()
    if result.error is not None:
        raise RuntimeError(f"the Ray Train run failed: {result.error}")
    return {"checkpoint": None if result.checkpoint is None else result.checkpoint.path,
            "metrics": dict(result.metrics or {})}
