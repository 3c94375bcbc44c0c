"""``DreamerAgent``: Dreamer experiments in one process (the degenerate case of the runtime:
one env loop, one replay, the learner in process, the same :meth:`Dreamer.update`)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from distwm.configs.dreamer_config import DreamerConfig
from distwm.models.dreamer.interaction import RandomActor, make_runner

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
        from distwm.memory.dreamer_memory import ReplayBuffer

        cfg = dreamer.args
        size = cfg.buffer_size
        step_bytes = 4 * dreamer.action_size + 16
        for key, shape in dreamer.obs_shapes.items():
            step_bytes += int(np.prod(shape)) * (1 if key == "image" else 4)
        budget = get_available_memory() // 2
        if size * step_bytes > budget:
            size = max(cfg.train_seq_len * cfg.num_envs, budget // step_bytes)
            _log.warning("buffer_size %d needs %.1f GB; using %d steps (half the available memory)",
                         cfg.buffer_size, cfg.buffer_size * step_bytes / 1e9, size)
        return ReplayBuffer(size, dreamer.obs_shapes, dreamer.action_size, cfg.train_seq_len,
                            cfg.batch_size, num_envs=cfg.num_envs, seed=cfg.seed)

    def _log(self, metrics: Mapping[str, float], step: int) -> None:
        if self._logger is None:
            from distwm.utils.dreamer_utils import Logger

            self._logger = Logger(self.log_dir, enable_wandb=self.config.use_wandb,
                                  wandb_project=self.config.wandb_project,
                                  config=self.config.to_dict())
        self._logger.log_scalars(dict(metrics), step)
        self._logger.flush()  # a long run's metrics.jsonl is readable while it runs

    # -- training ------------------------------------------------------------------------------
    def train(self, total_steps: int | None = None) -> dict[str, Any]:
        """Collect, replay and update until ``total_steps`` env steps (default: the config's).

        Returns a summary: env steps, updates, wall time, evaluation history, last returns.
        """
        cfg = self.config
        total = int(cfg.total_steps if total_steps is None else total_steps)
        if total <= 0:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
        self._seed()
        envs = [make_env(cfg, seed=cfg.seed + i) for i in range(cfg.num_envs)]
        try:
            return self._train_loop(envs, total)
        finally:
            for env in envs:
                env.close()
            if self._logger is not None:
                self._logger.flush()

    def _train_loop(self, envs, total: int) -> dict[str, Any]:
        dreamer = self._build(envs[0])
        rcfg = dreamer.args
        self.replay = self.replay or self._replay(dreamer)
        dreamer.replay = self.replay
        prefill = rcfg.seed_steps > dreamer.env_steps
        runner = make_runner(envs, RandomActor(envs) if prefill else dreamer, rcfg.seed)
        spec = dreamer.data_spec()
        repeat = rcfg.action_repeat
        budget = 0.0
        next_eval = dreamer.env_steps + rcfg.test_interval if rcfg.test_interval else None
        next_ckpt = dreamer.env_steps + rcfg.checkpoint_interval if rcfg.checkpoint_interval else None
        next_log = dreamer.env_steps + rcfg.log_interval
        metrics: dict[str, float] = {}
        start, last_time, last_steps = time.time(), time.time(), dreamer.env_steps
        progress = _progress(total, dreamer.env_steps)
        while dreamer.env_steps < total:
            if prefill and dreamer.env_steps >= rcfg.seed_steps:
                prefill = False
                runner.agent = dreamer  # the policy takes over (with fresh recurrent states)
            stepped, finished = dreamer.step_into_replay(runner, self.replay)
            progress.update(stepped * repeat)
            for _, ret, _ in finished:
                self.episode_returns.append((dreamer.env_steps, ret))
            if not prefill and self.replay.can_sample():
                budget += stepped * spec.updates_per_env_step
                while budget >= 1.0:
                    metrics = dreamer.train_one_batch()
                    budget -= 1.0
            if next_eval is not None and dreamer.env_steps >= next_eval:
                next_eval += rcfg.test_interval
                self._evaluate_now(dreamer)
                progress.set_postfix(eval_return=f"{self.history[-1][1]:.1f}")
            if next_ckpt is not None and dreamer.env_steps >= next_ckpt:
                next_ckpt += rcfg.checkpoint_interval
                dreamer.save(os.path.join(self.log_dir, "checkpoints", "latest.pt"))
            if dreamer.env_steps >= next_log:
                next_log += rcfg.log_interval
                now = time.time()
                fps = (dreamer.env_steps - last_steps) / max(now - last_time, 1e-9)
                last_time, last_steps = now, dreamer.env_steps
                recent = [r for _, r in self.episode_returns[-10:]]
                line = {**metrics, "env_steps_per_s": fps, "updates": dreamer.updates,
                        "replay_steps": len(self.replay)}
                if recent:
                    line["train_return"] = float(np.mean(recent))
                self._log(line, dreamer.env_steps)
        progress.close()
        if rcfg.checkpoint_interval:
            dreamer.save(os.path.join(self.log_dir, "checkpoints", "latest.pt"))
        return {"env_steps": dreamer.env_steps, "updates": dreamer.updates,
                "wall_time_s": time.time() - start, "eval_history": list(self.history),
                "nonfinite_updates": dreamer.nonfinite_updates,
                "last_train_returns": [r for _, r in self.episode_returns[-10:]]}

    # -- evaluation ----------------------------------------------------------------------------
    def _episodes(self, dreamer, episodes: int, seed: int) -> list[float]:
        env = make_env(dreamer.args, seed=seed)
        try:
            return dreamer.evaluate(env, episodes, seed=seed)["returns"]
        finally:
            env.close()

    def _evaluate_now(self, dreamer) -> float:
        cfg = dreamer.args
        returns = self._episodes(dreamer, cfg.test_episodes, cfg.seed + 10_000 + len(self.history))
        mean = float(np.mean(returns))
        self.history.append((dreamer.env_steps, mean))
        self._log({"eval_return": mean, "eval_return_std": float(np.std(returns))}, dreamer.env_steps)
        _log.info("step %d  eval return %.1f +- %.1f over %d episodes", dreamer.env_steps, mean,
                  float(np.std(returns)), len(returns))
        return mean

    def evaluate(self) -> dict[str, Any]:
        """``test_episodes`` greedy episodes of the current (or ``checkpoint_path``) policy."""
        cfg = self.config
        self._seed()
        if self.dreamer is None:
            env = make_env(cfg, seed=cfg.seed + 10_000)
            try:
                self._build(env)
            finally:
                env.close()
        returns = self._episodes(self.dreamer, cfg.test_episodes, cfg.seed + 10_000)
        return {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
                "returns": returns, "env_steps": self.dreamer.env_steps}


def _progress(total: int, done: int):
    """A tqdm bar over env steps (stderr)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="step", desc="dreamer", dynamic_ncols=True,
                mininterval=5.0)
