"""Whole evaluation episodes of a protocol agent in one env (the single-process trainers'
``evaluate``): the agent acts with ``explore=False`` from a fresh state per episode."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["play_episodes"]


def play_episodes(core: Any, env: Any, num_episodes: int, seed: int, render: bool = False):
    """``num_episodes`` episodes of ``core`` (a :class:`distwm.agent.Agent` on ``image``
    observations) in ``env``, episode ``i`` reset with ``seed + i``. Returns ``(returns
    (num_episodes,) float64, videos, latents)``: with ``render``, one ``(T, H, W, 3)`` uint8
    video per episode and the first part of the agent's state ``(steps, ...)`` at every step;
    empty lists without it."""
    if int(num_episodes) < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes!r}")
    returns, videos, latents = [], [], []
    for episode in range(int(num_episodes)):
        obs, _ = env.reset(seed=int(seed) + episode)
        state, first, total, frames = core.initial_state(1), True, 0.0, []
        while True:
            action, state = core.act({"image": obs["image"][None], "is_first": np.array([first])}, state,
                                     explore=False)
            if render:
                frames.append(obs["image"].transpose(1, 2, 0))
                latents.append(state[0][0].detach().cpu().numpy())
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total, first = total + float(reward), False
            if terminated or truncated:
                break
        returns.append(total)
        if render:
            videos.append(np.stack(frames))
    return np.asarray(returns, np.float64), videos, latents
