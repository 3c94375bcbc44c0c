"""The seed's env-facing methods of ``Dreamer``: collect random or policy steps into the
attached replay, and evaluate. They collect with the same
:class:`~distwm.loop.adapters.RunnerCollector` as ``DreamerAgent.train`` (over
:class:`distwm.loop.env_loop.EnvRunner`, the one env loop of distwm)."""

from __future__ import annotations

from typing import Any

import numpy as np

from distwm.loop.env_loop import make_runner

__all__ = ["InteractionMixin"]


class InteractionMixin:
    """``collect_random_episodes`` / ``act_and_collect_data`` / ``evaluate`` for :class:`Dreamer`."""

    def _ensure_replay(self):
        if self.replay is None:
            from distwm.memory.dreamer_memory import ReplayBuffer

            cfg = self.args
            self.replay = ReplayBuffer(cfg.buffer_size, self.obs_shapes, self.action_size,
                                       cfg.train_seq_len, cfg.batch_size, seed=cfg.seed)
        if self.replay.num_envs != 1:
            raise ValueError(
                f"collecting from one env needs a single-stream replay, this one has "
                f"num_envs={self.replay.num_envs}"
            )
        return self.replay

    def count_env_steps(self, records, stepped: int) -> None:
        """``on_step`` of a :class:`~distwm.loop.adapters.RunnerCollector`: counts the frames of
        the envs that stepped (an env whose episode had ended resets instead)."""
        self.env_steps += stepped * self.args.action_repeat

    def _collector(self, env):
        """One collector per env, so that consecutive calls continue the env's episode."""
        from distwm.loop.adapters import RunnerCollector

        collectors = self.__dict__.setdefault("_collectors", {})
        collector = collectors.get(id(env))
        if collector is None or collector.envs[0] is not env:
            collector = collectors[id(env)] = RunnerCollector(
                [env], self, self.args.seed, self.args.action_repeat, on_step=self.count_env_steps)
        return collector

    def _collect(self, env, steps: int, random: bool) -> list[float]:
        if not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"the number of steps to collect must be a positive int, got {steps!r}")
        replay = self._ensure_replay()
        collector = self._collector(env)
        returns: list[float] = []
        taken = 0
        while taken < steps:
            got = collector.collect(random=random)
            replay.add_batch(got.data)
            taken += got.inserted
            returns.extend(ret for ret, _ in got.episodes)
        return returns

    def collect_random_episodes(self, env, seed_steps: int) -> list[float]:
        """Add ``seed_steps`` steps of uniformly random actions to the replay; returns the
        returns of the episodes that ended meanwhile."""
        return self._collect(env, seed_steps, random=True)

    def act_and_collect_data(self, env, collect_steps: int) -> list[float]:
        """Add ``collect_steps`` steps of the exploring policy to the replay; returns the
        returns of the episodes that ended meanwhile."""
        return self._collect(env, collect_steps, random=False)

    def evaluate(self, env, eval_episodes: int, render: bool = False,
                 seed: int | None = None) -> dict[str, Any]:
        """``eval_episodes`` greedy episodes in ``env`` (first reset seeded with ``seed``,
        default ``args.seed + 10000``).

        Returns ``{"mean_return", "std_return", "returns"}`` and, with ``render``, the image
        observations of the first episode as ``frames`` ``(T, C, H, W)`` uint8 (or
        ``env.render()`` frames when the env observes no images).
        """
        frames: list[np.ndarray] = []
        agent = self
        if render:
            agent = _Recorder(self, env, frames)
        runner = make_runner([env], agent, self.args.seed + 10_000 if seed is None else seed)
        returns = [ret for ret, _ in runner.run_episodes(eval_episodes, explore=False)]
        out: dict[str, Any] = {"mean_return": float(np.mean(returns)),
                               "std_return": float(np.std(returns)), "returns": returns}
        if render:
            out["frames"] = np.stack(frames) if frames else np.zeros((0,), np.uint8)
        return out


class _Recorder:
    """Wraps a policy to keep the frames of the first episode it acts in."""

    def __init__(self, policy, env, frames: list):
        self.policy, self.env, self.frames = policy, env, frames
        self.episodes = 0

    def initial_state(self, num_envs: int):
        return self.policy.initial_state(num_envs)

    def act(self, obs, state, explore: bool):
        if obs["is_first"][0] and self.frames:
            self.episodes += 1
        if self.episodes == 0:
            frame = obs["image"][0] if "image" in obs else self.env.render()
            if frame is not None:
                self.frames.append(np.asarray(frame))
        return self.policy.act(obs, state, explore)
