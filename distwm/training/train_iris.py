"""IRIS on one machine: the seed's ``IRISTrainer`` and ``main``.

:meth:`IRISTrainer.train` is the runtime's loop in one process (:class:`distwm.loop.TrainLoop`
over one env and a step replay, the same :class:`~distwm.models.iris.core.IRISCore.update` and
replay-ratio arithmetic): IRIS's epochs of ``steps_per_epoch`` env steps and
``updates_per_epoch`` updates, the parts starting after 5 / 25 / 50 epochs. The first
``tokenizer_start_epochs`` epochs collect with uniformly random actions (IRIS collects them
with its untrained, near-uniform policy). :meth:`collect_experience` and :meth:`train_epoch`
are the two halves of an epoch for a user who drives the epochs by hand.

    python -m distwm.training.train_iris --game ALE/Breakout-v5 --epochs 600
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

import numpy as np

__all__ = ["IRISTrainer", "main"]

log = logging.getLogger(__name__)


def _device(device: str) -> str:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        log.warning("IRISTrainer: device %r requested but CUDA is not available; training on the CPU", device)
        return "cpu"
    return device


class IRISTrainer:
    """Training loop for IRIS on Atari 100k (module docstring). Nothing is built until the first
    method that needs the env or the agent."""

    def __init__(self, game: str = "ALE/Pong-v5", device: str = "cuda", seed: int = 42, config=None):
        from distwm.configs.iris_config import IRISConfig

        self.config = (config or IRISConfig()).replace(env=game, seed=int(seed))
        self.device = device
        self.seed = int(seed)
        self.core = None
        self.replay = None
        self._collector = None
        self.history: list[tuple[int, float]] = []

    # -- building -----------------------------------------------------------------------------
    def _env(self, evaluation: bool = False, seed: int | None = None):
        from distwm.envs.factory import make_env_from_config

        cfg = self.config.for_evaluation() if evaluation else self.config
        return make_env_from_config(cfg, self.seed if seed is None else seed)

    def _build(self):
        if self.core is None:
            import torch

            from distwm.loop.adapters import RunnerCollector
            from distwm.memory.dreamer_memory import ReplayBuffer
            from distwm.models.iris.core import IRISCore

            torch.manual_seed(self.seed)
            env = self._env()
            self.core = IRISCore.from_config(self.config, env.observation_space, env.action_space,
                                             _device(self.device))
            spec = self.core.data_spec()
            self.replay = ReplayBuffer(self.config.buffer_size, tuple(env.observation_space["image"].shape),
                                       int(env.action_space.shape[0]), spec.max_seq_len, 1, seed=self.seed)
            self._collector = RunnerCollector([env], self.core, self.seed)
        return self.core

    def preprocess_frame(self, frame: np.ndarray) -> np.ndarray:
        """An RGB frame ``(H, W, 3)`` (any size, uint8) -> ``(3, S, S)`` float32 in ``[0, 1]``
        (``S``: the config's ``image_size``), as the Atari wrapper feeds the agent."""
        from distwm.envs.base import to_chw_image

        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"preprocess_frame expects an RGB frame (H, W, 3), got shape {frame.shape}")
        size = int(self.config.image_size)
        return to_chw_image(frame, (size, size)).astype(np.float32) / 255.0

    # -- the two halves of an epoch -----------------------------------------------------------
    def collect_experience(self, num_steps: int, epsilon: float = 0.01) -> float:
        """``num_steps`` env steps with the policy (``epsilon`` random actions) into replay;
        returns the mean return of the episodes that ended (NaN if none did)."""
        core = self._build()
        saved = core.config
        core.config = saved.replace(epsilon=float(epsilon))
        returns = []
        try:
            for _ in range(int(num_steps)):
                got = self._collector.collect(random=False)
                self.replay.add_batch(got.data)
                returns.extend(r for r, _ in got.episodes)
        finally:
            core.config = saved
        return float(np.mean(returns)) if returns else float("nan")

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """``updates_per_epoch`` updates on replayed batches (the parts IRIS's schedule has
        started by then); returns the mean of each metric."""
        core = self._build()
        spec = core.data_spec()
        if not self.replay.can_sample():
            raise ValueError(f"train_epoch({epoch}): replay holds {len(self.replay)} steps, fewer than a "
                             f"sequence of {spec.max_seq_len}; collect_experience first")
        sums: dict[str, list[float]] = {}
        for _ in range(self.config.updates_per_epoch):
            batches = {s.name: self.replay.sample_batch(s.batch_size, s.seq_len) for s in spec.samples}
            for k, v in core.update(batches).items():
                sums.setdefault(k, []).append(v)
        return {k: float(np.mean(v)) for k, v in sums.items()} | {"epoch": float(epoch)}

    def get_epsilon(self, epoch: int) -> float:
        """IRIS explores with a constant epsilon (``config.epsilon``, 0.01) at every epoch."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch!r}")
        return float(self.config.epsilon)

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, num_episodes: int = 100, render: bool = False):
        """``num_episodes`` whole games on the evaluation envs (1 no-op start, no life-loss
        ends) at ``eval_temperature``. Returns ``{"mean_return", "std_return", "returns"}``, or
        with ``render`` ``(returns, videos (T, H, W, 3) uint8 per episode, latents (steps, lstm))``."""
        from distwm.loop.evaluation import play_episodes

        core = self._build()
        env = self._env(evaluation=True, seed=self.seed + 10_000)
        try:
            returns, videos, latents = play_episodes(core, env, num_episodes, self.seed + 10_000, render)
        finally:
            env.close()
        if render:
            return returns, videos, np.stack(latents) if latents else np.zeros((0, core.config.lstm_size))
        return {"mean_return": float(returns.mean()), "std_return": float(returns.std()),
                "returns": returns.tolist()}

    # -- the whole run ------------------------------------------------------------------------
    def train(self, total_epochs: int | None = None, eval_interval: int = 50,
              save_dir: str = "checkpoints/iris") -> dict[str, Any]:
        """Train for ``total_epochs`` epochs (default: ``config.total_steps`` env steps), evaluate
        every ``eval_interval`` epochs and checkpoint to ``save_dir/latest.pt`` there."""
        from distwm.loop.adapters import StepReplay
        from distwm.loop.train_loop import TrainLoop
        from distwm.utils.checkpoint import save_file

        cfg = self.config
        core = self._build()
        total = cfg.total_steps if total_epochs is None else int(total_epochs) * cfg.steps_per_epoch
        if total <= 0:
            raise ValueError(f"total_epochs must be a positive integer, got {total_epochs!r}")
        interval = int(eval_interval) * cfg.steps_per_epoch

        def evaluate(step: int) -> float:
            mean = self.evaluate(cfg.eval_episodes)["mean_return"]
            self.history.append((step, mean))
            log.info("step %d  eval return %.1f", step, mean)
            return mean

        def checkpoint(step: int) -> None:
            os.makedirs(save_dir, exist_ok=True)
            save_file(core.state_dict(), os.path.join(save_dir, "latest.pt"))

        loop = TrainLoop(core, self._collector, StepReplay(self.replay), total_steps=total,
                         prefill_steps=cfg.prefill_steps, eval_interval=interval, checkpoint_interval=interval,
                         log_interval=cfg.log_interval, evaluate=evaluate, checkpoint=checkpoint, desc="iris")
        result = loop.run()
        checkpoint(result.env_steps)
        return {"env_steps": result.env_steps, "updates": core.updates, "wall_time_s": result.wall_time_s,
                "eval_history": list(self.history), "last_train_returns": [r for _, r in result.episode_returns[-10:]]}


def main(argv: list[str] | None = None) -> int:
    """Run IRIS training on a single Atari game."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="ALE/Pong-v5")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=None, help="epochs of 200 env steps (default: 100k steps)")
    parser.add_argument("--eval-interval", type=int, default=50, help="epochs between evaluations")
    parser.add_argument("--save-dir", default="checkpoints/iris")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    summary = IRISTrainer(args.game, args.device, args.seed).train(args.epochs, args.eval_interval, args.save_dir)
    print(summary)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
