"""Connecting to Ray and placing the run's actors in one placement group."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ActorPlan", "connect", "plan_actors", "check_fits", "create_placement_group",
           "current_placement_group", "scheduling", "LEARNER_RESOURCE"]

_log = logging.getLogger(__name__)


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to ``address`` (or ``RAY_ADDRESS``), or start a local instance.

    Returns ``True`` when this call started Ray (the caller shuts it down). An already
    initialised Ray (a test session, a Tune trial) is used as it is.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _log.info("connecting to Ray at %s", address)
        ray.init(address=address, log_to_driver=True)
        return True
    _log.info("starting a local Ray instance (%s CPUs)", num_cpus or "all")
    ray.init(num_cpus=num_cpus, log_to_driver=True, configure_logging=False)
    return True


@dataclass
class ActorPlan:
    """How many actors of each role and what each reserves."""

    workers: int
    envs_per_worker: int
    shards: int
    worker_cpus: float
    learner_cpus: float
    learner_gpus: float
    shard_cpus: float
    evaluator_cpus: float
    evaluator: bool
    learners: int = 1
    bundles: list[dict[str, float]] = field(default_factory=list)

    @property
    def learner_device(self) -> str:
        return "cuda" if self.learner_gpus > 0 else "cpu"

    def total(self, resource: str) -> float:
        return sum(b.get(resource, 0.0) for b in self.bundles)

    # bundles 0..learners-1: learners; then env workers; then shards and evaluator
    def learner_bundle(self, rank: int) -> int:
        return rank

    def worker_bundle(self, index: int) -> int:
        return self.learners + index

    def _extra_bundle(self, role: str) -> int:
        cpus = self.shard_cpus if role == "shard" else self.evaluator_cpus
        if cpus <= 0:
            return -1  # no reservation: any bundle's node
        offset = self.learners + self.workers
        if role == "evaluator" and self.shard_cpus > 0:
            offset += self.shards
        return offset

    def shard_bundle(self, index: int) -> int:
        first = self._extra_bundle("shard")
        return -1 if first < 0 else first + index

    def evaluator_bundle(self) -> int:
        return self._extra_bundle("evaluator")


#: custom resource that cluster YAMLs give GPU nodes: learner bundles ask for it when the
#: cluster has it, so learners land on GPU nodes and nothing else takes their slot
LEARNER_RESOURCE = "learner"


def plan_actors(runtime: Any, cluster_cpus: float, cluster_gpus: float,
                want_gpu: bool = True, learner_resource: bool = False) -> ActorPlan:
    """Resolve ``workers="auto"`` and ``learner_gpus="auto"`` against the cluster's resources.

    ``auto`` workers: the CPUs left after the learners, shards and evaluator, divided by
    ``worker_cpus`` (at least 1). ``learner_resource``: the cluster advertises the
    ``learner`` resource (each GPU learner's bundle then asks for one). Raises ``ValueError``
    when the plan cannot fit.
    """
    evaluator = runtime.eval_episodes > 0
    learners = int(getattr(runtime, "learners", 1))
    if runtime.learner_gpus == "auto":
        gpus = 1.0 if (want_gpu and cluster_gpus >= learners) else 0.0
    else:
        gpus = float(runtime.learner_gpus)
    fixed = (learners * runtime.learner_cpus + runtime.shards * runtime.shard_cpus
             + (runtime.evaluator_cpus if evaluator else 0.0))
    if runtime.workers == "auto":
        workers = max(1, int((cluster_cpus - fixed) // runtime.worker_cpus))
    else:
        workers = int(runtime.workers)
    plan = ActorPlan(workers, runtime.envs_per_worker, runtime.shards, runtime.worker_cpus,
                     runtime.learner_cpus, gpus, runtime.shard_cpus, runtime.evaluator_cpus,
                     evaluator, learners)
    learner = {"CPU": runtime.learner_cpus}
    if gpus:
        learner["GPU"] = gpus
        if learner_resource:
            learner[LEARNER_RESOURCE] = 1.0
    plan.bundles = [{k: v for k, v in learner.items() if v > 0} or {"CPU": 0.01}
                    for _ in range(learners)]
    plan.bundles += [{"CPU": runtime.worker_cpus} for _ in range(workers)]
    if runtime.shard_cpus > 0:
        plan.bundles += [{"CPU": runtime.shard_cpus} for _ in range(runtime.shards)]
    if evaluator and runtime.evaluator_cpus > 0:
        plan.bundles.append({"CPU": runtime.evaluator_cpus})
    streams = workers * runtime.envs_per_worker
    if streams < runtime.shards:
        raise ValueError(
            f"{workers} workers x {runtime.envs_per_worker} envs = {streams} env streams cannot "
            f"feed runtime.shards={runtime.shards} shards: use at most {streams} shards or more "
            "workers/envs_per_worker"
        )
    return plan


def check_fits(plan: ActorPlan, cluster_cpus: float, cluster_gpus: float) -> None:
    need_cpu, need_gpu = plan.total("CPU"), plan.total("GPU")
    if need_cpu > cluster_cpus + 1e-9 or need_gpu > cluster_gpus + 1e-9:
        raise ValueError(
            f"the run needs {need_cpu:g} CPUs and {need_gpu:g} GPUs ({plan.workers} workers x "
            f"{plan.worker_cpus:g} CPU, {plan.learners} learner(s) x {plan.learner_cpus:g} CPU + "
            f"{plan.learner_gpus:g} GPU, ...) but the Ray cluster has {cluster_cpus:g} CPUs and {cluster_gpus:g} GPUs: "
            "lower runtime.workers / *_cpus or use workers='auto'"
        )


def create_placement_group(plan: ActorPlan, strategy: str, timeout: float = 120.0):
    """Reserve the plan's bundles; ``RuntimeError`` if the cluster cannot place them in time."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group(plan.bundles, strategy=strategy, name="")
    try:
        ray.get(pg.ready(), timeout=timeout)
    except ray.exceptions.GetTimeoutError as exc:
        remove_placement_group(pg)
        raise RuntimeError(
            f"Ray could not place {len(plan.bundles)} bundles ({plan.total('CPU'):g} CPUs, "
            f"{plan.total('GPU'):g} GPUs, strategy {strategy}) within {timeout:.0f} s"
        ) from exc
    return pg


def current_placement_group(plan: ActorPlan):
    """The placement group the driver runs in (a Tune trial's), checked to hold the driver's
    bundle followed by the plan's bundles."""
    from ray.util import get_current_placement_group

    pg = get_current_placement_group()
    if pg is None:
        raise ValueError(
            "runtime.placement_group='current' but the driver does not run in a placement group "
            "(only Tune trials do): leave it null"
        )
    have = len(pg.bundle_specs)
    if have < 1 + len(plan.bundles):
        raise ValueError(
            f"the current placement group has {have} bundles; the run needs 1 (driver) + "
            f"{len(plan.bundles)} (learner, workers, ...)"
        )
    return pg


def scheduling(pg: Any, bundle: int) -> Any:
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=bundle,
                                            placement_group_capture_child_tasks=False)
