"""``DreamerAgent``: Dreamer experiments in one process (the degenerate case of the runtime:
one env loop, one replay, the learner in process, the same :meth:`Dreamer.update`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from distwm.configs.dreamer_config import DreamerConfig

__all__ = ["DreamerAgent", "get_available_memory", "make_env", "resolve_config"]

_log = logging.getLogger(__name__)


def get_available_memory() -> int:
    """Available physical memory in bytes (``MemAvailable``; total memory as a fallback)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def make_env(args: DreamerConfig, seed: int | None = None):
    """The env of ``args`` with distwm's standard wrappers (see ``make_env_from_config``)."""
    from distwm.envs.factory import make_env_from_config

    return make_env_from_config(args, seed)


def resolve_config(config=None, **overrides: Any) -> DreamerConfig:
    """A :class:`DreamerConfig` from ``None`` (V3 defaults), a config, a dict or a YAML path."""
    if config is None:
        cfg = DreamerConfig()
    elif isinstance(config, DreamerConfig):
        cfg = config
    elif isinstance(config, Mapping):
        cfg = DreamerConfig.from_dict(config)
    elif isinstance(config, (str, Path)):
        cfg = DreamerConfig.from_yaml(Path(config))
    else:
        raise ValueError(
            f"DreamerAgent config must be a DreamerConfig, a dict, a YAML path or None, "
            f"got {type(config).__name__}"
        )
    return cfg.replace(**overrides) if overrides else cfg


class DreamerAgent:
    """Train and evaluate Dreamer (V1/V2/V3) end to end.

    ``DreamerAgent(config, **overrides)``: ``config`` is a :class:`DreamerConfig`, a dict,
    a YAML path or ``None``; keyword overrides are config fields. The constructor only
    checks the config: envs, the log directory and the networks are created by
    :meth:`train` / :meth:`evaluate`.

    After :meth:`train`, ``agent.dreamer`` is the trained :class:`Dreamer`, ``agent.replay``
    the replay buffer and ``agent.history`` the list of ``(env_steps, mean_eval_return)``.
    """

    def __init__(self, config=None, **kwargs: Any):
        self.config = resolve_config(config, **kwargs)
        self.config.resolved()  # fail now on inconsistent settings
        self.dreamer = None
        self.replay = None
        self.history: list[tuple[int, float]] = []
        self.episode_returns: list[tuple[int, float]] = []
        self._logger = None

    # -- construction ------------------------------------------------------------------------
    @property
    def log_dir(self) -> str:
        return os.path.join(self.config.log_dir, self.config.exp_name)

    def _seed(self) -> None:
        import random

        import torch

        random.seed(self.config.seed)
        np.random.seed(self.config.seed)
        torch.manual_seed(self.config.seed)

    def _build(self, env) -> Any:
        from distwm.models.dreamer.core import Dreamer

        if self.dreamer is None:
            self.dreamer = Dreamer.from_config(self.config, env.observation_space, env.action_space,
                                               device=self.config.device)
            if self.config.checkpoint_path:
                self.dreamer.restore_checkpoint(self.config.checkpoint_path)
        return self.dreamer

    def _replay(self, dreamer) -> Any:
        """The replay buffer; ``buffer_memory_limit`` (a fraction of the available memory), when
        set, caps its size and says so; without it the config's ``buffer_size`` holds."""
        from distwm.memory.dreamer_memory import ReplayBuffer

        cfg = dreamer.args
        spec = dreamer.data_spec()
        seq_len = spec.seq_len  # train_seq_len, plus replay_context steps before it
        size = cfg.buffer_size
        limit = getattr(cfg, "buffer_memory_limit", None)
        if limit is not None:
            step_bytes = 4 * dreamer.action_size + 16
            for key, shape in dreamer.obs_shapes.items():
                step_bytes += int(np.prod(shape)) * (1 if key == "image" else 4)
            for shape, dtype in spec.entry_specs.values():
                step_bytes += int(np.prod(shape)) * np.dtype(dtype).itemsize
            budget = int(get_available_memory() * limit)
            if size * step_bytes > budget:
                size = max(seq_len * cfg.num_envs, budget // step_bytes)
                _log.warning("buffer_size %d needs %.1f GB, over buffer_memory_limit=%g of the "
                             "available memory: using %d steps", cfg.buffer_size,
                             cfg.buffer_size * step_bytes / 1e9, limit, size)
        return ReplayBuffer(size, dreamer.obs_shapes, dreamer.action_size, seq_len,
                            cfg.batch_size, num_envs=cfg.num_envs, seed=cfg.seed,
                            entries=spec.entry_specs)

    def _log(self, metrics: Mapping[str, float], step: int) -> None:
        if self._logger is None:
            from distwm.utils.run_logger import Logger

            self._logger = Logger(self.log_dir, enable_wandb=self.config.use_wandb,
                                  wandb_project=self.config.wandb_project,
                                  config=self.config.to_dict())
        self._logger.log_scalars(dict(metrics), step)
        self._logger.flush()  # a long run's metrics.jsonl is readable while it runs

    # -- training ------------------------------------------------------------------------------
    def train(self, total_steps: int | None = None) -> dict[str, Any]:
        """Collect, replay and update until ``total_steps`` env steps (default: the config's),
        with :class:`distwm.loop.TrainLoop` (the runtime's loop in one process).

        Returns a summary: env steps, updates, wall time, evaluation history, last returns.
        """
        cfg = self.config
        total = int(cfg.total_steps if total_steps is None else total_steps)
        if total <= 0:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
        self._seed()
        envs = [make_env(cfg, seed=cfg.seed + i) for i in range(cfg.num_envs)]
        try:
            return self._run_loop(envs, total)
        finally:
            for env in envs:
                env.close()
            if self._logger is not None:
                self._logger.flush()

    def _run_loop(self, envs, total: int) -> dict[str, Any]:
        from distwm.loop.adapters import RunnerCollector, StepReplay
        from distwm.loop.train_loop import TrainLoop

        dreamer = self._build(envs[0])
        rcfg = dreamer.args
        self.replay = self.replay or self._replay(dreamer)
        dreamer.replay = self.replay
        repeat = rcfg.action_repeat

        def evaluate(step: int) -> float:
            mean = self._evaluate_now(dreamer)
            self._log_report(dreamer)
            return mean

        def checkpoint(step: int) -> None:
            dreamer.save(os.path.join(self.log_dir, "checkpoints", "latest.pt"))

        collector = RunnerCollector(envs, dreamer, rcfg.seed, repeat, on_step=dreamer.count_env_steps)
        loop = TrainLoop(
            dreamer, collector, StepReplay(self.replay), total_steps=total,
            start_steps=dreamer.env_steps, prefill_steps=rcfg.seed_steps,
            eval_interval=rcfg.eval_interval,
            checkpoint_interval=rcfg.checkpoint_interval, log_interval=rcfg.log_interval,
            evaluate=evaluate, checkpoint=checkpoint if rcfg.checkpoint_interval else None,
            log=self._log_train, desc="dreamer")
        result = loop.run()
        self.episode_returns.extend(result.episode_returns)
        return {"env_steps": dreamer.env_steps, "updates": dreamer.updates,
                "wall_time_s": result.wall_time_s, "eval_history": list(self.history),
                "nonfinite_updates": dreamer.nonfinite_updates,
                "last_train_returns": [r for _, r in result.episode_returns[-10:]]}

    def _log_train(self, metrics: Mapping[str, float], step: int) -> None:
        if "eval_return" in metrics:
            return  # _evaluate_now logs evaluations with their spread
        line = dict(metrics)
        line["replay_steps"] = len(self.replay)
        self._log(line, step)

    # -- evaluation ----------------------------------------------------------------------------
    def _episodes(self, dreamer, episodes: int, seed: int) -> list[float]:
        env = make_env(dreamer.args, seed=seed)
        try:
            return dreamer.evaluate(env, episodes, seed=seed)["returns"]
        finally:
            env.close()

    def _evaluate_now(self, dreamer) -> float:
        cfg = dreamer.args
        returns = self._episodes(dreamer, cfg.eval_episodes,
                                 cfg.seed + 10_000 + len(self.history))
        mean = float(np.mean(returns))
        self.history.append((dreamer.env_steps, mean))
        self._log({"eval_return": mean, "eval_return_std": float(np.std(returns))}, dreamer.env_steps)
        _log.info("step %d  eval return %.1f +- %.1f over %d episodes", dreamer.env_steps, mean,
                  float(np.std(returns)), len(returns))
        return mean

    def _log_report(self, dreamer) -> None:
        """The open-loop predictions on a replayed batch (``Dreamer.report``) to the metrics,
        TensorBoard and ``media/`` of the log dir, as the Ray runtime logs them."""
        if self.replay is None or not self.replay.can_sample():
            return
        report = dreamer.report(self.replay.sample_batch())
        self._log(report["scalars"], dreamer.env_steps)
        self._logger.log_images(report["images"], dreamer.env_steps)
        self._logger.log_videos(report["videos"], dreamer.env_steps)

    def evaluate(self) -> dict[str, Any]:
        """``eval_episodes`` greedy episodes of the current (or ``checkpoint_path``) policy."""
        cfg = self.config
        self._seed()
        if self.dreamer is None:
            env = make_env(cfg, seed=cfg.seed + 10_000)
            try:
                self._build(env)
            finally:
                env.close()
        returns = self._episodes(self.dreamer, cfg.eval_episodes,
                                 cfg.seed + 10_000)
        return {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
                "returns": returns, "env_steps": self.dreamer.env_steps}
