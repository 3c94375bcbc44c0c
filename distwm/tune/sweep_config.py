"""``SweepConfig``: the strict schema of ``tune_configs/*.yaml``.

A sweep is agents x games x seeds, each trial one distributed training run of
``distwm.runtime``, plus the budget every trial gets, the runtime layout, Tune settings and
optionally a hyper-parameter search with a scheduler (ASHA or PBT)::

    name: quickstart                 # results go to <tune.storage_path>/<name>
    suite: dmc_proprio               # the benchmark suite the report scores (or null)
    compare: [DreamerV3]             # published agents `distwm report` puts beside ours
    agents:                          # label -> model + agent-config overrides
      dreamer: {model: dreamer, agent: {model_size: tiny}}
    games: [cartpole-balance, pendulum-swingup]   # each sets the agent config's `env`
    seeds: [0, 1]                    # each sets the agent config's `seed`
    budget: {env_steps: 20000, eval_episodes: 5}
    runtime: {workers: 1, envs_per_worker: 2, shards: 1}   # RuntimeConfig fields
    tune: {max_concurrent_trials: 2, max_failures: 2}
    search:                          # optional: Tune search space over agent./runtime. fields
      agent.actor_learning_rate: {loguniform: [1.0e-5, 1.0e-4]}
    scheduler: {type: asha, grace_period: 5000}    # optional: asha | pbt | fifo

Every problem is a ``ValueError`` naming the field (``budget.env_stepz``) and the valid
choices; :meth:`SweepConfig.validate` also builds every agent x game config once, so a bad
agent field or env name fails before any trial starts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional

from distwm.configs.base import ConfigBase

__all__ = [
    "AgentSpec",
    "BudgetConfig",
    "TuneSettings",
    "SchedulerConfig",
    "SweepConfig",
    "SEARCH_KINDS",
    "check_search_domain",
    "REFERENCE_SUITES",
    "SUITES",
    "SWEEP_OWNED_RUNTIME_FIELDS",
]

#: Tune sampling functions a ``search`` entry may use: ``{kind: argument}``.
SEARCH_KINDS = ("grid", "choice", "uniform", "loguniform", "randint", "lograndint")
#: Suites with published results in ``shared/reference`` (``distwm report`` compares to them).
REFERENCE_SUITES = ("atari100k", "dmc_proprio", "dmc_vision")
#: Every ``suite:``: the reference suites, ``crafter`` (scored with the Crafter score beside the
#: published ones, :mod:`distwm.benchmarks.crafter_score`) and ``minatar`` (raw returns).
SUITES = REFERENCE_SUITES + ("crafter", "minatar")
#: Runtime fields a sweep sets itself for each trial.
SWEEP_OWNED_RUNTIME_FIELDS = {
    "total_steps": "budget.env_steps", "steps": "budget.env_steps",
    "eval_episodes": "budget.eval_episodes",
    "run_dir": "tune.storage_path (each trial's run lives under <storage_path>/<name>/runs)",
    "address": "`distwm sweep --address`",
    "placement_group": "the sweep (each run is placed in its trial's placement group)",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class AgentSpec(ConfigBase):
    """One agent of the sweep: a registered model (``dreamer``) or a config class path
    (``package.module:ConfigClass``) and overrides of its config, shared by every game."""

    model: str = "dreamer"
    agent: dict[str, Any] = field(default_factory=dict)


@dataclass
class BudgetConfig(ConfigBase):
    """What each trial gets.

    ``env_steps``: agent steps (after action repeat) of the run. ``eval_episodes``: episodes of
    the final evaluation, whose mean return is the trial's ``score``; evaluations also run every
    ``eval_interval`` steps (0: only the final one). ``time_limit_s``: wall-clock limit per trial
    (the trial stops and keeps its last evaluation), ``None`` for none.
    """

    env_steps: int = 100_000
    eval_episodes: int = 10
    eval_interval: int = 0
    time_limit_s: Optional[float] = None


@dataclass
class TuneSettings(ConfigBase):
    """Ray Tune settings of the sweep.

    ``storage_path``: where Tune keeps results and checkpoints (a local path, shared by the
    cluster's nodes, or ``s3://``/``gs://``); runs write their own files under
    ``runs_path`` (default ``<storage_path>/<name>/runs``; it must be a filesystem path that the
    nodes running learners can write, e.g. NFS on a multi-node cluster, so set it when
    ``storage_path`` is a bucket).
    ``max_concurrent_trials``: trials at once (``None``: as many as the cluster holds).
    ``max_failures``: restarts of a failed trial from its last checkpoint.
    ``num_samples``: draws from ``search`` (the grid of agents x games x seeds is repeated
    ``num_samples`` times). ``driver_cpus``: CPUs reserved for each trial's driver (its own
    bundle, the first of the trial's placement group). ``metric``/``mode``: what schedulers
    optimise; ``score`` is the latest evaluation return (before the first evaluation: the
    recent training return). ``keep_checkpoints``: Tune checkpoints kept per trial.
    ``fit_to_cluster``: before Tune starts, size each trial to the cluster and stop at once when
    one cannot fit (:mod:`distwm.tune.resources`); ``false`` takes the reservations as written
    (an autoscaling cluster whose nodes have not started yet; ``distwm sweep --no-fit-check``).
    """

    storage_path: str = "~/ray_results"
    runs_path: Optional[str] = None
    max_concurrent_trials: Optional[int] = None
    max_failures: int = 2
    num_samples: int = 1
    driver_cpus: float = 1.0
    metric: str = "score"
    mode: Literal["max", "min"] = "max"
    keep_checkpoints: int = 2
    verbose: int = 1
    fit_to_cluster: bool = True

    def validate(self) -> "TuneSettings":
        """Raise ``ValueError`` naming the first bad field (``tune.<field>``); returns ``self``."""
        if self.max_concurrent_trials is not None and self.max_concurrent_trials < 1:
            raise ValueError(
                f"tune.max_concurrent_trials must be >= 1 or null, got {self.max_concurrent_trials}")
        for name in ("max_failures", "num_samples", "keep_checkpoints"):
            if getattr(self, name) < (0 if name == "max_failures" else 1):
                raise ValueError(f"tune.{name} must be >= {0 if name == 'max_failures' else 1}, "
                                 f"got {getattr(self, name)!r}")
        if self.driver_cpus < 0:
            raise ValueError(f"tune.driver_cpus must be >= 0, got {self.driver_cpus}")
        return self


@dataclass
class SchedulerConfig(ConfigBase):
    """A Tune trial scheduler, in env steps (``time_attr`` is ``env_steps``).

    ``asha``: ``grace_period`` (env steps before a trial may be stopped), ``reduction_factor``,
    ``max_t`` (default: ``budget.env_steps``). ``pbt``: ``perturbation_interval`` (env steps),
    ``quantile_fraction``, ``resample_probability``; it mutates the ``search`` entries.
    """

    type: Literal["fifo", "asha", "pbt"] = "fifo"
    grace_period: int = 10_000
    reduction_factor: float = 3.0
    max_t: Optional[int] = None
    perturbation_interval: int = 20_000
    quantile_fraction: float = 0.25
    resample_probability: float = 0.25


@dataclass
class SweepConfig(ConfigBase):
    """The whole sweep (see the module docstring); build with :meth:`load` or ``from_dict``."""

    name: str = "sweep"
    suite: Optional[Literal["atari100k", "dmc_proprio", "dmc_vision", "crafter", "minatar"]] = None
    compare: list[str] = field(default_factory=list)
    agents: dict[str, Any] = field(default_factory=lambda: {"dreamer": AgentSpec()})
    games: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    runtime: dict[str, Any] = field(default_factory=dict)
    tune: TuneSettings = field(default_factory=TuneSettings)
    search: dict[str, Any] = field(default_factory=dict)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)

    # -- parsing ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], _prefix: str = "") -> "SweepConfig":
        config = super().from_dict(data, _prefix)
        agents = {}
        for label, spec in config.agents.items():
            if isinstance(spec, AgentSpec):
                agents[label] = spec
            elif isinstance(spec, Mapping):
                agents[label] = AgentSpec.from_dict(spec, _prefix=f"{_prefix}agents.{label}.")
            else:
                raise ValueError(
                    f"Config field {_prefix}agents.{label!s}: expected a mapping with 'model' "
                    f"and 'agent', got {spec!r}"
                )
        config.agents = agents
        return config.validate()

    @classmethod
    def load(cls, path: str) -> "SweepConfig":
        """Parse and validate a sweep YAML file; errors name the file."""
        from pathlib import Path

        try:
            return cls.from_yaml(Path(path))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["agents"] = {k: v.to_dict() for k, v in self.agents.items()}
        return out

    # -- validation -----------------------------------------------------------------------------
    def validate(self) -> "SweepConfig":
        if not _NAME.match(self.name):
            raise ValueError(f"sweep name {self.name!r} must be letters, digits, '_', '-', '.'")
        if not self.agents:
            raise ValueError("agents: the sweep needs at least one agent")
        for label in self.agents:
            if not _NAME.match(str(label)):
                raise ValueError(f"agents: label {label!r} must be letters, digits, '_', '-', '.'")
        _check_unique("games", self.games)
        _check_unique("seeds", self.seeds)
        b = self.budget
        for name, value, low in (("env_steps", b.env_steps, 1), ("eval_episodes", b.eval_episodes, 1),
                                 ("eval_interval", b.eval_interval, 0)):
            if value < low:
                raise ValueError(f"budget.{name} must be >= {low}, got {value!r}")
        if b.time_limit_s is not None and b.time_limit_s <= 0:
            raise ValueError(f"budget.time_limit_s must be > 0 or null, got {b.time_limit_s!r}")
        t = self.tune.validate()
        if "://" in t.storage_path and t.runs_path is None:
            raise ValueError(
                f"tune.runs_path is required when tune.storage_path is a URI ({t.storage_path!r}): "
                "runs write checkpoints and replay snapshots to a filesystem path"
            )
        self._check_suite()
        self._check_runtime()
        self._check_search()
        self._check_scheduler()
        self._check_agent_configs()
        return self

    def _check_suite(self) -> None:
        if self.suite is None:
            return
        if self.suite not in REFERENCE_SUITES:
            self._check_unpublished_suite()
            return
        from distwm.benchmarks.normalization import canonical_atari_game, canonical_dmc_task

        canonical = canonical_atari_game if self.suite == "atari100k" else canonical_dmc_task
        for game in self.games:
            if canonical(game) is None:
                raise ValueError(f"games: {game!r} is not a task of suite {self.suite!r}")

    def _check_unpublished_suite(self) -> None:
        """``crafter`` / ``minatar``: every game is one of the suite's ids; no per-game published
        returns to ``compare`` with (a Crafter report sets the published Crafter scores beside)."""
        from distwm.envs.crafter_env import crafter_variant
        from distwm.envs.minatar_env import minatar_game

        known = crafter_variant if self.suite == "crafter" else minatar_game
        for game in self.games:
            if known(game) is None:
                example = "crafter:reward" if self.suite == "crafter" else "minatar:breakout"
                raise ValueError(f"games: {game!r} is not a task of suite {self.suite!r} (e.g. {example})")
        if self.compare:
            raise ValueError(f"compare: suite {self.suite!r} has no published per-game returns to "
                             f"compare {self.compare} with; compare needs a suite of "
                             f"{', '.join(REFERENCE_SUITES)}")

    def _check_runtime(self) -> None:
        from distwm.configs.runtime_config import RuntimeConfig

        for key, owner in SWEEP_OWNED_RUNTIME_FIELDS.items():
            if key in self.runtime:
                raise ValueError(f"runtime.{key} is set by the sweep: use {owner}")
        RuntimeConfig.from_dict(self.runtime, _prefix="runtime.").validate()

    def _check_search(self) -> None:
        from distwm.configs.runtime_config import RuntimeConfig

        for key, spec in self.search.items():
            section, _, name = key.partition(".")
            if section not in ("agent", "runtime") or not name:
                raise ValueError(f"search: key {key!r} must be 'agent.<field>' or 'runtime.<field>'")
            if section == "runtime":
                if name in SWEEP_OWNED_RUNTIME_FIELDS:
                    raise ValueError(f"search: runtime.{name} is set by the sweep")
                if name not in RuntimeConfig.field_names() and name not in RuntimeConfig.aliases():
                    raise RuntimeConfig.unknown_field_error(name, "search: runtime.")
            check_search_domain(key, spec)

    def _check_scheduler(self) -> None:
        s = self.scheduler
        if s.type == "fifo":
            return
        if s.reduction_factor <= 1:
            raise ValueError(f"scheduler.reduction_factor must be > 1, got {s.reduction_factor}")
        for name in ("grace_period", "perturbation_interval"):
            if getattr(s, name) < 1:
                raise ValueError(f"scheduler.{name} must be >= 1, got {getattr(s, name)}")
        if s.max_t is not None and s.max_t < s.grace_period:
            raise ValueError(f"scheduler.max_t ({s.max_t}) must be >= grace_period ({s.grace_period})")
        if not 0 < s.quantile_fraction <= 0.5:
            raise ValueError(f"scheduler.quantile_fraction must be in (0, 0.5], got {s.quantile_fraction}")
        if s.type == "pbt":
            self._check_pbt_mutations()

    def _check_pbt_mutations(self) -> None:
        """PBT continues a trial from another trial's run: only what a resumed run may change
        can mutate (runtime fields other than the replay layout)."""
        from distwm.runtime.setup import FIXED_ON_RESUME

        if not self.search:
            raise ValueError("scheduler.type 'pbt' mutates the 'search' entries: add some")
        if len(self.agents) != 1 or len(self.games) != 1:
            raise ValueError(
                "scheduler.type 'pbt' evolves one population: use one agent and one game "
                f"(got {len(self.agents)} agents, {len(self.games)} games; seeds seed the population)"
            )
        for key, spec in self.search.items():
            section, _, name = key.partition(".")
            kind = next(iter(spec))
            if section != "runtime" or name in FIXED_ON_RESUME:
                raise ValueError(
                    f"search.{key}: PBT continues trials from each other's checkpoints, so it can "
                    f"only mutate runtime fields a resumed run may change (not the agent config, "
                    f"not {', '.join(FIXED_ON_RESUME)})"
                )
            if kind == "grid":
                raise ValueError(f"search.{key}: PBT samples mutations; use choice, not grid")

    def _check_agent_configs(self) -> None:
        """Build every agent x game config once (no env, no torch)."""
        from distwm.configs.runtime_config import RunConfig

        for label, spec in self.agents.items():
            for game in self.games:
                agent = {**spec.agent, "env": game, "seed": self.seeds[0]}
                try:
                    RunConfig(model=spec.model, agent=agent).build_agent_config()
                except ValueError as exc:
                    raise ValueError(f"agents.{label} on game {game!r}: {exc}") from None

    # -- the trial matrix ------------------------------------------------------------------------
    def experiment_path(self) -> str:
        """Where Tune keeps this sweep (``distwm report`` reads it)."""
        storage = self.tune.storage_path
        if "://" not in storage:
            storage = os.path.abspath(os.path.expanduser(storage))
        return f"{storage.rstrip('/')}/{self.name}"

    def runs_root(self) -> str:
        """The directory holding one run directory per trial."""
        if self.tune.runs_path is not None:  # a path, a shared mount or a URI (s3://, gs://)
            if "://" in self.tune.runs_path:
                return self.tune.runs_path.rstrip("/")
            return os.path.abspath(os.path.expanduser(self.tune.runs_path))
        return os.path.join(self.experiment_path(), "runs")

    def action_repeats(self) -> dict[str, int]:
        """``{agent label: action repeat}`` of its configs (``budget.env_steps`` counts agent
        steps; x action repeat it is the env frames a trial gets). ``ValueError`` when it is not
        one number per agent: the search varies it, or it differs between games."""
        from distwm.configs.runtime_config import RunConfig

        if "agent.action_repeat" in self.search:
            raise ValueError("search varies agent.action_repeat, so the trials' frame budgets differ")
        out = {}
        for label, spec in self.agents.items():
            repeats = {int(getattr(RunConfig(model=spec.model, agent={
                **spec.agent, "env": game, "seed": self.seeds[0]}).build_agent_config(),
                "action_repeat", 1)) for game in self.games}
            if len(repeats) != 1:
                raise ValueError(f"agents.{label}: action repeat differs between games "
                                 f"({sorted(repeats)}), so the trials' frame budgets differ")
            out[label] = repeats.pop()
        return out

    def num_grid_trials(self) -> int:
        """Trials of agents x games x seeds x grid entries, times ``tune.num_samples``."""
        n = len(self.agents) * len(self.games) * len(self.seeds) * self.tune.num_samples
        for spec in self.search.values():
            if "grid" in spec:
                n *= len(spec["grid"])
        return n


def check_search_domain(key: str, spec: Any) -> None:
    """``ValueError`` unless ``spec`` (the value of ``search.<key>``) is ``{kind: argument}``
    with a kind of :data:`SEARCH_KINDS`: a non-empty list for ``grid`` / ``choice``, else
    ``[low, high]`` with ``low < high`` (and ``low > 0`` for the log kinds)."""
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in SEARCH_KINDS:
        raise ValueError(f"search.{key}: expected one of {{{', '.join(SEARCH_KINDS)}: ...}}, "
                         f"got {spec!r}")
    kind, arg = next(iter(spec.items()))
    if kind in ("grid", "choice"):
        if not isinstance(arg, list) or not arg:
            raise ValueError(f"search.{key}.{kind}: expected a non-empty list, got {arg!r}")
    elif (not isinstance(arg, list) or len(arg) != 2
          or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arg)
          or not arg[0] < arg[1]):
        raise ValueError(f"search.{key}.{kind}: expected [low, high] with low < high, got {arg!r}")
    elif kind.startswith("log") and arg[0] <= 0:
        raise ValueError(f"search.{key}.{kind}: the low end must be > 0, got {arg[0]!r}")


def _check_unique(name: str, values: list) -> None:
    if not values:
        raise ValueError(f"{name}: the sweep needs at least one entry")
    seen = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{name}: {v!r} is listed twice")
        seen.add(v)
