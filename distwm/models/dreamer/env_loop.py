"""Stepping envs with an agent and turning the steps into replay records.

:class:`EnvLoop` drives ``N`` envs in lockstep with any :class:`distwm.agent.Agent` and
returns one replay step per env per call, in the format of :mod:`distwm.agent` (the action
stored with an observation is the one that led to it). An env whose episode ended is reset on
its next call instead of stepped, so that the reset observation is a step of its own
(``is_first``), as in DreamerV3's driver. Nothing here is specific to Dreamer.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["EnvLoop", "run_episodes"]


def _stack(obs_list: Sequence[dict], keys: Sequence[str]) -> dict[str, np.ndarray]:
    return {k: np.stack([np.asarray(o[k]) for o in obs_list]) for k in keys}


class EnvLoop:
    """Lockstep loop over ``envs`` (gymnasium 1.x, dict observations, vector actions)."""

    def __init__(self, envs: Sequence[Any], agent: Any, seed: int = 0):
        if not envs:
            raise ValueError("EnvLoop needs at least one env")
        self.envs = list(envs)
        self.agent = agent
        self.seed = seed
        space = self.envs[0].observation_space
        self.obs_keys = [k for k in ("image", "state") if k in getattr(space, "spaces", {})]
        if not self.obs_keys:
            raise ValueError(f"EnvLoop needs dict observations with 'image' and/or 'state', got {space}")
        self.action_size = int(self.envs[0].action_space.shape[0])
        self.obs: list[dict] = [{} for _ in self.envs]
        self.is_first = np.ones(len(self.envs), bool)
        self.needs_reset = np.ones(len(self.envs), bool)
        self.state = None
        self.episode_return = np.zeros(len(self.envs))
        self.episode_length = np.zeros(len(self.envs), int)
        self._resets = 0

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    def _reset(self, i: int) -> dict:
        seed = self.seed + 1000 * self._resets + i if self._resets < len(self.envs) else None
        self._resets += 1
        obs, _ = self.envs[i].reset(seed=seed)
        self.episode_return[i] = 0.0
        self.episode_length[i] = 0
        zeros = np.zeros(self.action_size, np.float32)
        return {**{k: obs[k] for k in self.obs_keys}, "action": zeros, "reward": 0.0,
                "is_first": True, "is_terminal": False, "is_last": False}

    def step(self, explore: bool = True, random: bool = False) -> tuple[dict[str, np.ndarray], list, int]:
        """Advance every env by one call.

        Returns ``(records, finished, env_steps)``: the replay step of each env stacked
        ``(N, ...)``, the ``(return, length)`` of episodes that ended, and how many envs
        really stepped (the others were reset). ``random`` samples actions from the action
        space instead of asking the agent.
        """
        records, finished, stepped = [], [], 0
        actions = None
        if random:
            actions = np.stack([env.action_space.sample() for env in self.envs]).astype(np.float32)
            self.state = None  # the policy starts afresh when it takes over
        elif not self.needs_reset.all():
            obs = _stack(self.obs, self.obs_keys)
            obs["is_first"] = self.is_first.copy()
            actions, self.state = self.agent.act(obs, self.state, explore)
        for i, env in enumerate(self.envs):
            if self.needs_reset[i]:
                record = self._reset(i)
                self.needs_reset[i] = False
            else:
                action = np.asarray(actions[i], np.float32)
                obs_i, reward, terminated, truncated, _ = env.step(action)
                stepped += 1
                self.episode_return[i] += float(reward)
                self.episode_length[i] += 1
                last = bool(terminated or truncated)
                record = {**{k: obs_i[k] for k in self.obs_keys}, "action": action,
                          "reward": float(reward), "is_first": False,
                          "is_terminal": bool(terminated), "is_last": last}
                if last:
                    finished.append((float(self.episode_return[i]), int(self.episode_length[i])))
                    self.needs_reset[i] = True
            self.obs[i] = {k: record[k] for k in self.obs_keys}
            self.is_first[i] = record["is_first"]
            records.append(record)
        batch = {k: np.stack([np.asarray(r[k]) for r in records]) for k in records[0]}
        batch["reward"] = batch["reward"].astype(np.float32)
        return batch, finished, stepped


def run_episodes(env: Any, agent: Any, episodes: int, explore: bool = False, seed: int = 0) -> list[float]:
    """Returns of ``episodes`` full episodes of ``agent`` in ``env``."""
    loop = EnvLoop([env], agent, seed=seed)
    returns: list[float] = []
    while len(returns) < episodes:
        _, finished, _ = loop.step(explore=explore)
        returns.extend(ret for ret, _ in finished)
    return returns
