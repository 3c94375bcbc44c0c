"""What each trial of a sweep reserves, and sizing it to the Ray cluster before Tune starts.

A trial is one placement group: its driver's bundle (``tune.driver_cpus``), then the run's own
bundles as ``distwm.runtime.placement.plan_actors`` plans them (learners, env workers, and the
replay shards and evaluator when they reserve CPUs). :func:`fit_sweep` checks that request
against ``ray.cluster_resources()``:

* GPUs and custom resources are taken as asked: a trial that asks more than the cluster has
  cannot fit.
* CPUs: the learners and env workers keep what they ask and must fit; the trial's driver,
  replay shards and evaluator (they mostly wait on the others) give way first, down to
  :data:`LIGHT_CPU_FLOOR` each, and if the learners and workers fill the cluster by themselves
  every CPU reservation of the trial is scaled by one factor so that the trial takes exactly
  the cluster (2 CPUs, learner 1 + worker 1 + driver: 0.9756 + 0.9756 + 0.0487).
* ``tune.max_concurrent_trials`` is lowered until that many trials fit at once.

Ray's CPUs are scheduling tokens, not cores: a fraction changes where Ray may place an actor,
not how fast it runs. A trial that cannot fit raises ``ValueError`` naming its bundles, the
request per resource, what the cluster has and the YAML fields (or flags) to change.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from distwm.tune.sweep_config import SweepConfig
from distwm.runtime.placement import LEARNER_RESOURCE  # cluster/*.yaml's GPU nodes advertise it

__all__ = [
    "LEARNER_RESOURCE",
    "LIGHT_CPU_FLOOR",
    "resolve_for_cluster",
    "trial_plan",
    "trial_bundles",
    "bundle_roles",
    "SweepFit",
    "fit_sweep",
]

#: the fewest CPUs sizing leaves a trial's driver, a replay shard or the evaluator
LIGHT_CPU_FLOOR = 0.05
#: runtime CPU fields of the roles that give way first (with ``tune.driver_cpus``)
LIGHT_RUNTIME_CPUS = ("shard_cpus", "evaluator_cpus")
_DRIVER = "tune.driver_cpus"
_UNIT = 1e-4  # Ray's resource granularity
_EPS = 1e-9
_MAX_VARIANTS = 512
_NO_FIT_HINT = ("On an autoscaling cluster whose nodes have not started yet, pass --no-fit-check "
                "(or set tune.fit_to_cluster: false) and Tune waits for them.")


def _wants_gpu(sweep: SweepConfig) -> bool:
    return any(str(spec.agent.get("device", "auto")).startswith(("auto", "cuda", "gpu"))
               for spec in sweep.agents.values())


def resolve_for_cluster(sweep: SweepConfig, resources: Mapping[str, float]) -> SweepConfig:
    """A copy whose ``runtime.workers`` / ``runtime.learner_gpus`` are numbers: ``auto`` gets the
    cluster's CPUs (GPUs) divided by ``tune.max_concurrent_trials``, less each trial's driver."""
    from distwm.configs.runtime_config import RuntimeConfig
    from distwm.runtime.placement import plan_actors

    runtime = RuntimeConfig.from_dict(sweep.runtime, _prefix="runtime.")
    share = float(sweep.tune.max_concurrent_trials or 1)
    cpus = resources.get("CPU", 0.0) / share - sweep.tune.driver_cpus
    gpus = math.floor(resources.get("GPU", 0.0) / share)
    plan = plan_actors(runtime.replace(eval_episodes=sweep.budget.eval_episodes), cpus, gpus,
                       want_gpu=_wants_gpu(sweep))
    fixed = dict(sweep.runtime)
    if runtime.workers == "auto":
        fixed["workers"] = plan.workers
    if runtime.learner_gpus == "auto":
        fixed["learner_gpus"] = plan.learner_gpus
    return SweepConfig.from_dict({**sweep.to_dict(), "runtime": fixed})


def _run_plan(runtime: Any, cluster_has_learner_resource: bool) -> tuple[Any, list[dict[str, float]]]:
    from distwm.runtime.placement import plan_actors

    plan = plan_actors(runtime, math.inf, math.inf)
    bundles = [dict(b) for b in plan.bundles]
    if cluster_has_learner_resource:  # only learners ask for GPUs
        for b in bundles:
            if b.get("GPU", 0) > 0:
                b[LEARNER_RESOURCE] = 1.0
    return plan, bundles


def _driver_bundle(driver_cpus: float) -> dict[str, float]:
    # never empty: Tune would drop an empty head bundle and shift the run's bundle indices
    return {"CPU": max(driver_cpus, 0.01)}


def trial_plan(sweep: SweepConfig, config: Mapping[str, Any],
               cluster_has_learner_resource: bool = False) -> tuple[Any, list[dict[str, float]]]:
    """``(ActorPlan, bundles)`` of one trial: the trial driver's bundle, then the run's."""
    from distwm.tune.trainable import trial_run_config

    plan, bundles = _run_plan(trial_run_config(sweep, config, None).runtime,
                              cluster_has_learner_resource)
    return plan, [_driver_bundle(sweep.tune.driver_cpus), *bundles]


def trial_bundles(sweep: SweepConfig, config: Mapping[str, Any],
                  cluster_has_learner_resource: bool = False) -> list[dict[str, float]]:
    """The placement-group bundles of one trial (see the module docstring)."""
    return trial_plan(sweep, config, cluster_has_learner_resource)[1]


def bundle_roles(plan: Any) -> list[str]:
    """What each of ``trial_plan``'s bundles is for: ``trial driver``, then per plan bundle
    ``env worker``, ``replay shard``, ``evaluator``, or ``learner`` (the rest)."""
    roles = ["learner"] * len(plan.bundles)
    marks = [(plan.worker_bundle(i), "env worker") for i in range(plan.workers)]
    marks += [(plan.shard_bundle(i), "replay shard") for i in range(plan.shards)]
    if plan.evaluator:
        marks.append((plan.evaluator_bundle(), "evaluator"))
    for index, role in marks:
        if 0 <= index < len(roles):
            roles[index] = role
    return ["trial driver", *roles]


# -- which trials differ in what they reserve ------------------------------------------------------
def _candidates(spec: Mapping[str, Any]) -> list[Any]:
    kind, arg = next(iter(spec.items()))
    if kind in ("grid", "choice"):
        return list(arg)
    if kind in ("randint", "lograndint"):  # high end excluded
        return [arg[0], max(arg[0], arg[1] - 1)]
    return [arg[0], arg[1]]


def _variants(sweep: SweepConfig) -> list[dict[str, Any]]:
    """Trial configs covering every value the ``runtime.*`` search entries can reserve (the
    ends of a range); agents, games and seeds do not change a trial's bundles."""
    base = {"agent": next(iter(sweep.agents)), "game": sweep.games[0], "seed": sweep.seeds[0]}
    keys = sorted(k for k in sweep.search if k.startswith("runtime."))
    values = [_candidates(sweep.search[k]) for k in keys]
    variants = []
    for combo in itertools.product(*values):
        variants.append({**base, **dict(zip(keys, combo))})
        if len(variants) >= _MAX_VARIANTS:
            break
    return variants


def _searched_fields(sweep: SweepConfig) -> set[str]:
    from distwm.configs.runtime_config import RuntimeConfig

    aliases = RuntimeConfig.aliases()
    names = (k.partition(".")[2] for k in sweep.search if k.startswith("runtime."))
    return {aliases.get(n, n) for n in names}


def _cpu_fields() -> list[str]:
    from distwm.configs.runtime_config import RuntimeConfig

    return [n for n in RuntimeConfig.field_names() if n.endswith("_cpus")]


# -- the fit -----------------------------------------------------------------------------------------
@dataclass
class SweepFit:
    """A sweep sized to a cluster: the sweep to run and what its largest trial reserves."""

    sweep: SweepConfig
    cluster: dict[str, float]
    bundles: list[dict[str, float]]
    roles: list[str]
    concurrent: int
    changes: list[str] = field(default_factory=list)

    @property
    def request(self) -> dict[str, float]:
        return _totals(self.bundles)

    def lines(self) -> list[str]:
        """What the CLI prints before Tune starts."""
        asked = ", ".join(f"{r} {v:g}" for r, v in self.request.items())
        out = [f"cluster {_fmt(self.cluster, self.request)}; each trial reserves {asked} "
               f"({_describe(self.roles, self.bundles)}): "
               + (f"{self.concurrent} trials at a time" if self.concurrent > 1 else "one trial at a time")]
        if self.changes:
            out.append("sized to fit: " + ", ".join(self.changes))
        return out


def _totals(bundles: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for b in bundles:
        for r, v in b.items():
            out[r] = round(out.get(r, 0.0) + v, 6)
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "CPU", kv[0] != "GPU", kv[0])))


def _fmt(cluster: Mapping[str, float], request: Mapping[str, float]) -> str:
    """The cluster's CPU, GPU and any resource the trial asks for."""
    keys = ["CPU", "GPU"] + [r for r in request if r not in ("CPU", "GPU")]
    return ", ".join(f"{r} {cluster.get(r, 0.0):g}" for r in keys)


def _describe(roles: list[str], bundles: list[dict[str, float]]) -> str:
    """``trial driver {CPU: 0.5}, learner {CPU: 1}, 8 x env worker {CPU: 1}``."""
    groups: list[list[Any]] = []
    for role, bundle in zip(roles, bundles):
        text = "{" + ", ".join(f"{r}: {v:g}" for r, v in bundle.items()) + "}"
        if groups and groups[-1][0] == role and groups[-1][1] == text:
            groups[-1][2] += 1
        else:
            groups.append([role, text, 1])
    return ", ".join(f"{n} x {role} {text}" if n > 1 else f"{role} {text}" for role, text, n in groups)


def _floor_unit(x: float) -> float:
    return math.floor(x / _UNIT + 1e-6) * _UNIT


class _Trials:
    """The sweep's distinct trials, re-planned with changed CPU fields."""

    def __init__(self, sweep: SweepConfig, has_learner: bool):
        from distwm.tune.trainable import trial_run_config

        self.sweep, self.has_learner = sweep, has_learner
        self.configs = _variants(sweep)
        self.runtimes = [trial_run_config(sweep, c, None).runtime for c in self.configs]
        self.searched = _searched_fields(sweep)
        self.fields = _cpu_fields()
        base = self.runtimes[0]
        self.start = {f: float(getattr(base, f)) for f in self.fields}
        self.start[_DRIVER] = float(sweep.tune.driver_cpus)

    def plans(self, values: Mapping[str, float]) -> list[tuple[Any, list[dict[str, float]], float]]:
        """``(plan, bundles, learner + worker CPUs)`` of each trial with ``values``."""
        out = []
        for rt in self.runtimes:
            rt = rt.replace(**{f: values[f] for f in self.fields if f not in self.searched})
            plan, bundles = _run_plan(rt, self.has_learner)
            heavy, _ = _run_plan(rt.replace(**{f: 0.0 for f in LIGHT_RUNTIME_CPUS}), False)
            out.append((plan, [_driver_bundle(values[_DRIVER]), *bundles], heavy.total("CPU")))
        return out


def _fit_cpus(trials: _Trials, budget: float) -> tuple[dict[str, float] | None, float, list[str]]:
    """``(CPU field values, learner + worker CPUs, blocked)``: values that make every trial fit
    ``budget`` CPUs, or ``None`` when they cannot; ``blocked``: the ``search``-set fields that
    sizing would have had to shrink (sizing leaves them alone)."""
    values, blocked = dict(trials.start), set()

    def worst() -> tuple[float, float]:
        plans = trials.plans(values)
        return (max(_totals(b).get("CPU", 0.0) for _, b, _ in plans), max(h for _, _, h in plans))

    def shrink(names, new_value) -> None:
        for f in names:
            if values.get(f, 0.0) <= 0:
                continue
            if f in trials.searched:
                blocked.add(f)
            else:
                values[f] = new_value(values[f])

    total, heavy = worst()
    if heavy > budget + _EPS:
        return None, heavy, []
    if total <= budget + _EPS:
        return values, heavy, []
    share = max(budget - heavy, 0.0) / max(total - heavy, _EPS)
    shrink((*LIGHT_RUNTIME_CPUS, _DRIVER),
           lambda x: max(min(x, LIGHT_CPU_FLOOR), _floor_unit(x * share)))
    total, _ = worst()
    scaled = False
    for _ in range(5):  # the learners and workers fill the budget: scale everything
        if total <= budget + _EPS:
            break
        scale, scaled = budget / total, True
        shrink(list(values), lambda x: _floor_unit(x * scale))
        total, _ = worst()
    if scaled and total < budget:  # the driver takes what rounding down left over
        values[_DRIVER] = _floor_unit(values[_DRIVER] + budget - total)
        total, _ = worst()
    if total > budget + _EPS or values.get("worker_cpus", 1.0) <= 0:
        return None, heavy, sorted(blocked)
    return values, heavy, []


def fit_sweep(sweep: SweepConfig, resources: Mapping[str, float]) -> SweepFit:
    """Size ``sweep`` (``runtime.workers`` already a number, see :func:`resolve_for_cluster`) to
    a cluster with ``resources`` (``ray.cluster_resources()``); ``ValueError`` when a trial
    cannot fit at all (see the module docstring)."""
    cluster = {k: float(v) for k, v in resources.items()}
    trials = _Trials(sweep, cluster.get(LEARNER_RESOURCE, 0.0) > 0)
    _check_devices(sweep, trials)
    wanted = sweep.tune.max_concurrent_trials or 1
    for k in range(wanted, 0, -1):
        budget = {r: v / k for r, v in cluster.items()}
        plans = trials.plans(trials.start)
        short = [i for i, (_, b, _) in enumerate(plans)
                 if any(v > budget.get(r, 0.0) + _EPS for r, v in _totals(b).items() if r != "CPU")]
        if short:
            if k == 1:
                raise _does_not_fit(sweep, trials, cluster, short[0], plans, heavy=None)
            continue
        values, heavy, blocked = _fit_cpus(trials, budget.get("CPU", 0.0))
        if values is not None:
            break
        if k == 1 and blocked:
            raise ValueError(
                f"sweep {sweep.name!r}: to fit the cluster ({_fmt(cluster, {})}) the trials' "
                f"{', '.join('runtime.' + f for f in blocked)} would have to shrink, but `search` "
                "sets them: give search values that fit. " + _NO_FIT_HINT)
        if k == 1:
            worst = max(range(len(plans)), key=lambda i: plans[i][2])
            raise _does_not_fit(sweep, trials, cluster, worst, plans, heavy=heavy)
    changed = {f: v for f, v in values.items() if abs(v - trials.start[f]) > _EPS}
    data = sweep.to_dict()
    data["runtime"] = {**data["runtime"], **{f: v for f, v in changed.items() if f != _DRIVER}}
    data["tune"]["driver_cpus"] = values[_DRIVER]
    notes = [f"{f if f == _DRIVER else 'runtime.' + f} {trials.start[f]:g} -> {v:g}"
             for f, v in changed.items()]
    if sweep.tune.max_concurrent_trials is not None and k < sweep.tune.max_concurrent_trials:
        data["tune"]["max_concurrent_trials"] = k
        notes.append(f"tune.max_concurrent_trials {sweep.tune.max_concurrent_trials} -> {k}")
    fitted = SweepConfig.from_dict(data)
    final = _Trials(fitted, trials.has_learner).plans(values)
    plan, bundles, _ = max(final, key=lambda p: _totals(p[1]).get("CPU", 0.0))
    request = _totals(bundles)
    at_once = min([math.floor(cluster.get(r, 0.0) / v + 1e-6) for r, v in request.items() if v > 0]
                  + [fitted.tune.max_concurrent_trials or math.inf, fitted.num_grid_trials()])
    return SweepFit(fitted, cluster, bundles, bundle_roles(plan), max(int(at_once), 1), notes)


def _check_devices(sweep: SweepConfig, trials: _Trials) -> None:
    """An agent that asks for CUDA needs a learner with a GPU."""
    gpu = min(_totals(b).get("GPU", 0.0) for _, b, _ in trials.plans(trials.start))
    for label, spec in sweep.agents.items():
        device = str(spec.agent.get("device", "auto"))
        if device.startswith("cuda") and gpu <= 0:
            raise ValueError(
                f"agents.{label}.agent.device is {device!r} but the trials' learners reserve no "
                f"GPU (runtime.learner_gpus is {trials.runtimes[0].learner_gpus!r}, after 'auto' "
                "on this cluster): use device 'auto' or 'cpu', or a cluster with GPUs")


def _does_not_fit(sweep: SweepConfig, trials: _Trials, cluster: Mapping[str, float],
                  index: int, plans: list, heavy: float | None) -> ValueError:
    """The error for trial ``index`` of ``trials`` (``plans``: their plans as asked)."""
    plan, bundles, _ = plans[index]
    request = _totals(bundles)
    roles = bundle_roles(plan)
    lines = [f"a trial of sweep {sweep.name!r} cannot fit the Ray cluster, so the sweep did not "
             "start.",
             f"  each trial asks for: {_describe(roles, bundles)}",
             f"  per resource: trial {', '.join(f'{r} {v:g}' for r, v in request.items())}; "
             f"cluster (ray.cluster_resources()) {_fmt(cluster, request)}"]
    fixes: list[str] = []
    rt = trials.runtimes[index]
    for r, need in request.items():
        have = cluster.get(r, 0.0)
        if r == "CPU" and heavy is not None:
            lines.append(
                f"  CPU: the learners and env workers alone need {heavy:g} (only the trial driver, "
                f"replay shards and evaluator can shrink, to {LIGHT_CPU_FLOOR:g} each); the cluster "
                f"has {have:g}")
            fixes.append(f"runtime.workers ({rt.workers}), runtime.worker_cpus ({rt.worker_cpus:g}), "
                         f"runtime.learner_cpus ({rt.learner_cpus:g})")
            if getattr(rt, "learners", 1) > 1:
                fixes.append(f"runtime.learners ({rt.learners})")
        elif r != "CPU" and need > have + _EPS:
            lines.append(f"  {r}: the trial asks {need:g}, the cluster has {have:g}")
            if r == "GPU":
                fixes.append(f"runtime.learner_gpus ({rt.learner_gpus!s}; 0 for CPU learners, "
                             "'auto' to use a GPU only where the cluster has one)")
            else:
                fixes.append(f"the cluster's nodes must advertise the {r!r} resource")
    searched = sorted(f"search.runtime.{f}" for f in trials.searched)
    lines.append("  change in the sweep YAML: " + "; ".join(fixes)
                 + (f" (or {', '.join(searched)})" if searched else "")
                 + ", or run on a bigger cluster (--address).")
    lines.append("  " + _NO_FIT_HINT)
    return ValueError("\n".join(lines))
