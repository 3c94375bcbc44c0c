"""DIAMOND on one machine: the seed's ``DiamondAgent`` and ``train_diamond``.

:meth:`DiamondAgent.train` is the runtime's loop in one process (:class:`distwm.loop.TrainLoop`
over one env and a step replay, the same :class:`~distwm.models.diamond.core.DiamondCore.update`
and replay-ratio arithmetic): an initial collection of ``initial_collection_steps`` (5,000)
with uniformly random actions, then epochs of ``environment_steps_per_epoch`` (100) env steps
and ``training_steps_per_epoch`` (400) updates of each part, the actor-critic joining after
5,000 updates. Checkpoints load with ``torch.load(..., weights_only=True)``.

    python -m distwm.training.train_diamond --game Breakout-v5 --preset paper --device cuda
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

__all__ = ["DiamondAgent", "train_diamond", "main"]

log = logging.getLogger(__name__)

DEFAULT_DIR = os.path.join("checkpoints", "diamond")


def _checkpoint_path(path: str | os.PathLike | None) -> str:
    """The seed's rule: ``None`` -> ``checkpoints/diamond/checkpoint.pt``; a bare file name goes
    into ``checkpoints/diamond/``; a path with a directory is used as is."""
    if path is None:
        return os.path.join(DEFAULT_DIR, "checkpoint.pt")
    path = os.fspath(path)
    return path if os.path.dirname(path) else os.path.join(DEFAULT_DIR, path)


class DiamondAgent:
    """DIAMOND: DIffusion As a Model Of eNvironment Dreams (module docstring). ``config``: a
    :class:`~distwm.configs.diamond_config.DiamondConfig`; nothing is built until a method
    needs the env or the networks."""

    def __init__(self, config=None):
        from distwm.configs.diamond_config import DiamondConfig

        self.config = config if config is not None else DiamondConfig()
        self.core = None
        self.replay = None
        self._collector = None
        self.history: list[tuple[int, float]] = []

    def _env(self, evaluation: bool = False, seed: int | None = None):
        from distwm.envs.factory import make_env_from_config

        cfg = self.config.for_evaluation() if evaluation else self.config
        return make_env_from_config(cfg, self.config.seed if seed is None else seed)

    def _build(self):
        if self.core is None:
            import torch

            from distwm.loop.adapters import RunnerCollector
            from distwm.memory.dreamer_memory import ReplayBuffer
            from distwm.models.diamond.core import DiamondCore

            torch.manual_seed(self.config.seed)
            env = self._env()
            self.core = DiamondCore.from_config(self.config, env.observation_space, env.action_space,
                                                self.config.resolved_device)
            spec = self.core.data_spec()
            self.replay = ReplayBuffer(self.config.buffer_size, tuple(env.observation_space["image"].shape),
                                       int(env.action_space.shape[0]), spec.max_seq_len, 1, seed=self.config.seed)
            self._collector = RunnerCollector([env], self.core, self.config.seed)
        return self.core

    def train(self) -> dict[str, Any]:
        """The whole run (module docstring): ``config.total_steps`` env steps, evaluating every
        ``eval_interval`` and checkpointing every ``checkpoint_interval`` env steps."""
        from distwm.loop.adapters import StepReplay
        from distwm.loop.train_loop import TrainLoop

        cfg = self.config
        core = self._build()

        def evaluate(step: int) -> float:
            mean = self.evaluate(cfg.eval_episodes)
            self.history.append((step, mean))
            log.info("step %d  eval return %.1f", step, mean)
            return mean

        def checkpoint(step: int) -> None:
            self.save_checkpoint()

        loop = TrainLoop(core, self._collector, StepReplay(self.replay), total_steps=cfg.total_steps,
                         prefill_steps=cfg.prefill_steps, eval_interval=cfg.eval_interval,
                         checkpoint_interval=cfg.checkpoint_interval, log_interval=cfg.log_interval,
                         evaluate=evaluate, checkpoint=checkpoint, desc="diamond")
        result = loop.run()
        self.save_checkpoint()
        return {"env_steps": result.env_steps, "updates": core.updates, "wall_time_s": result.wall_time_s,
                "eval_history": list(self.history), "last_train_returns": [r for _, r in result.episode_returns[-10:]]}

    def evaluate(self, num_episodes: int = 1) -> float:
        """Mean return of ``num_episodes`` whole games on the evaluation env (no life-loss
        ends, raw rewards), sampling the policy with ``eval_epsilon``."""
        from distwm.loop.evaluation import play_episodes

        core = self._build()
        env = self._env(evaluation=True, seed=self.config.seed + 10_000)
        try:
            returns, _, _ = play_episodes(core, env, num_episodes, self.config.seed + 10_000)
        finally:
            env.close()
        return float(returns.mean())

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> str:
        """Networks, optimisers and the update counter to ``path`` (see :func:`_checkpoint_path`)."""
        from distwm.utils.checkpoint import save_file

        target = _checkpoint_path(path)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        save_file(self._build().state_dict(), target)
        return target

    def load_checkpoint(self, path: str | None = None) -> None:
        """Load a :meth:`save_checkpoint` (or a runtime checkpoint's agent state) from ``path``."""
        from distwm.utils.checkpoint import agent_state, load_file

        target = _checkpoint_path(path)
        if not os.path.exists(target):
            raise FileNotFoundError(f"DiamondAgent.load_checkpoint: no checkpoint at {target!r}")
        self._build().load_state_dict(agent_state(load_file(target, None, "DIAMOND")))


def train_diamond(game: str, seed: int = 0, preset: str | None = None, device: str = "cpu") -> DiamondAgent:
    """Train DIAMOND on ``game`` (e.g. ``"Breakout-v5"``) with a :data:`~distwm.configs.diamond_config.PRESETS`
    preset; returns the trained agent."""
    from distwm.configs.diamond_config import DiamondConfig

    agent = DiamondAgent(DiamondConfig(preset=preset, game=game, seed=int(seed), device=device))
    agent.train()
    return agent


def main(argv: list[str] | None = None) -> int:
    """Run DIAMOND training on a single Atari game."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="Breakout-v5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default=None, help="paper (default), medium, small or tiny")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    agent = train_diamond(args.game, args.seed, args.preset, args.device)
    print(f"final eval return {agent.evaluate(agent.config.eval_episodes):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
