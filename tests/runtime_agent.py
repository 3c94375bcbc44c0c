"""A small but honest agent and env for the runtime tests (importable by Ray workers).

``SignEnv``: the state is ``[x, episode_step, env_marker, 1]``; the reward for an action is 1
when its index matches ``x > 0`` (``x`` is redrawn every step); episodes end by termination
(probability ``p_terminate`` a step) or truncation at ``time_limit``; with ``fail_after`` the env
raises after that many steps (to test restarts).

``TwoSampleAgent``: a ``TinyAgent`` that declares two samples, as IRIS does: single frames
(``B x 1``, for a tokenizer) and ``B x 20`` sequences, with shares of the replay budget that
make the frames come every other update; it checks each batch's shape and counts them.

``TinyAgent``: an MLP Q-model of ``reward(state_{t-1}, action_t)`` trained by Adam on replay
sequences, acting greedily on it (epsilon-greedy when exploring). Its recurrent state counts
steps since ``is_first``. Each update also checks the sequence invariants of the replay format
and reports the violations it finds as ``seq_violations`` (the runtime tests assert 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import gymnasium as gym
import numpy as np
import torch

from distwm.agent import DEFAULT_SAMPLE, DataSpec, SampleSpec
from distwm.configs.rl_config import RLConfig


class SignEnv(gym.Env):
    def __init__(self, seed: int = 0, time_limit: int = 20, p_terminate: float = 0.05,
                 fail_after: int = 0):
        self.observation_space = gym.spaces.Dict(
            {"state": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)})
        self.action_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.time_limit = time_limit
        self.p_terminate = p_terminate
        self.marker = float(seed % 997) / 997.0
        self._rng = np.random.default_rng(seed)
        self._seeded = False
        self._t = 0
        self._x = 0.0
        self.fail_after = fail_after
        self._steps = 0

    def _obs(self) -> dict:
        return {"state": np.array([self._x, self._t, self.marker, 1.0], np.float32)}

    def reset(self, *, seed: int | None = None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._t = 0
        self._x = float(self._rng.uniform(-1, 1))
        return self._obs(), {}

    def step(self, action):
        action = np.asarray(action, np.float32)
        if action.shape != (2,):
            raise ValueError(f"SignEnv takes a one-hot (2,) action, got shape {action.shape}")
        self._steps += 1
        if self.fail_after and self._steps > self.fail_after:
            raise RuntimeError(f"SignEnv failure injected after {self.fail_after} steps")
        reward = float(int(np.argmax(action)) == int(self._x > 0))
        self._t += 1
        self._x = float(self._rng.uniform(-1, 1))
        terminated = bool(self._rng.random() < self.p_terminate)
        truncated = self._t >= self.time_limit and not terminated
        return self._obs(), reward, terminated, truncated, {}


def make_env(config: "TinyAgentConfig", seed: int) -> SignEnv:
    return SignEnv(seed=seed, time_limit=config.time_limit, p_terminate=config.p_terminate,
                   fail_after=config.fail_after)


@dataclass
class TinyAgentConfig(RLConfig):
    AGENT_CLASS: ClassVar[str] = "runtime_agent:TinyAgent"

    env: str = "sign"
    time_limit: int = 20
    p_terminate: float = 0.05
    fail_after: int = 0  # > 0: envs raise after that many steps (failure injection)
    batch_size: int = 4
    seq_len: int = 8
    train_ratio: float = 32.0
    hidden: int = 16
    lr: float = 0.01
    epsilon: float = 0.3
    update_repeats: int = 1


class TinyAgent:
    def __init__(self, config: TinyAgentConfig, obs_dim: int, num_actions: int, device: str = "cpu"):
        self.config = config
        self.num_actions = num_actions
        self.device = torch.device(device)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(obs_dim + num_actions, config.hidden), torch.nn.Tanh(),
            torch.nn.Linear(config.hidden, 1)).to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.updates = 0
        self._rng = np.random.default_rng(config.seed)

    @classmethod
    def from_config(cls, config, observation_space, action_space, device="cpu"):
        return cls(config, observation_space["state"].shape[0], action_space.shape[0], device)

    # -- data --------------------------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        c = self.config
        return DataSpec(c.batch_size, c.seq_len, c.train_ratio)

    # -- acting ------------------------------------------------------------------------------
    def initial_state(self, num_envs: int) -> np.ndarray:
        return np.zeros(num_envs, np.int64)

    def _q_values(self, states: torch.Tensor) -> torch.Tensor:
        n = states.shape[0]
        eye = torch.eye(self.num_actions, device=states.device)
        inputs = torch.cat([states.repeat_interleave(self.num_actions, 0), eye.repeat(n, 1)], 1)
        return self.model(inputs).view(n, self.num_actions)

    def act(self, obs: Mapping[str, Any], state: np.ndarray, explore: bool):
        first = np.asarray(obs["is_first"], bool)
        state = np.where(first, 0, state + 1)
        with torch.no_grad():
            q = self._q_values(torch.as_tensor(obs["state"], device=self.device))
        index = q.argmax(1).cpu().numpy()
        if explore:
            random = self._rng.random(len(index)) < self.config.epsilon
            index = np.where(random, self._rng.integers(0, self.num_actions, len(index)), index)
        return np.eye(self.num_actions, dtype=np.float32)[index], state

    def get_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def set_weights(self, weights: Mapping[str, Any]) -> None:
        self.model.load_state_dict(weights)

    # -- learning ----------------------------------------------------------------------------
    @staticmethod
    def sequence_violations(batch: Mapping[str, np.ndarray]) -> int:
        """Replay-format violations: steps and env markers must run on inside an episode;
        an episode start has step 0, zero action and zero reward."""
        state, first = batch["state"], batch["is_first"]
        step, marker = state[..., 1], state[..., 2]
        inner = ~first[:, 1:]
        bad = inner & ((step[:, 1:] != step[:, :-1] + 1) | (marker[:, 1:] != marker[:, :-1]))
        bad_first = first & ((step != 0) | (np.abs(batch["action"]).sum(-1) != 0)
                             | (batch["reward"] != 0))
        return int(bad.sum() + bad_first.sum())

    def update(self, batches: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, float]:
        from distwm.utils.distributed import reduce_gradients  # data-parallel learners

        batch = batches[DEFAULT_SAMPLE]
        violations = self.sequence_violations(batch)
        states = torch.as_tensor(batch["state"][:, :-1], device=self.device)
        actions = torch.as_tensor(batch["action"][:, 1:], device=self.device)
        rewards = torch.as_tensor(batch["reward"][:, 1:], device=self.device)
        mask = torch.as_tensor(~batch["is_first"][:, 1:], device=self.device).float()
        for _ in range(self.config.update_repeats):
            pred = self.model(torch.cat([states, actions], -1)).squeeze(-1)
            loss = (((pred - rewards) ** 2) * mask).sum() / mask.sum().clamp(min=1)
            self.opt.zero_grad()
            loss.backward()
            reduce_gradients(self.model.parameters())  # average over the learner group, if any
            self.opt.step()
        self.updates += 1
        return {"loss": float(loss), "seq_violations": float(violations)}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.updates = int(state["updates"])


@dataclass
class TwoSampleAgentConfig(TinyAgentConfig):
    AGENT_CLASS: ClassVar[str] = "runtime_agent:TwoSampleAgent"

    frames_batch: int = 8
    seq_len: int = 20
    batch_size: int = 2
    frames_share: float = 0.1  # 8 frames in half the updates: 4 of 44 replayed steps per update


class TwoSampleAgent(TinyAgent):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.counts = {"frames": 0, "sequences": 0}

    def data_spec(self) -> DataSpec:
        c = self.config
        sequences = c.batch_size * c.seq_len
        # shares such that frames are drawn half as often as sequences (per update)
        frames_share = 0.5 * c.frames_batch / (0.5 * c.frames_batch + sequences)
        return DataSpec(train_ratio=c.train_ratio, samples=[
            SampleSpec("frames", c.frames_batch, 1, share=frames_share),
            SampleSpec("sequences", c.batch_size, c.seq_len, share=1.0 - frames_share)])

    def update(self, batches):
        spec = self.data_spec()
        expected = spec.due(self.updates)
        if tuple(sorted(batches)) != tuple(sorted(expected)):
            raise ValueError(f"update {self.updates} got samples {sorted(batches)}, expected {expected}")
        for name, batch in batches.items():
            want = spec.sample(name)
            for key, value in batch.items():
                if value.shape[:2] != (want.batch_size, want.seq_len):
                    raise ValueError(f"{name}[{key}] has shape {value.shape}, expected "
                                     f"({want.batch_size}, {want.seq_len}, ...)")
            self.counts[name] += 1
        metrics = super().update({DEFAULT_SAMPLE: batches["sequences"]})
        frames = batches.get("frames")
        metrics["frame_violations"] = float(0 if frames is None else
                                            (np.abs(frames["action"][frames["is_first"]]).sum() > 0))
        metrics["frames_batches"] = float(self.counts["frames"])
        metrics["sequence_batches"] = float(self.counts["sequences"])
        return metrics

    def state_dict(self):
        return {**super().state_dict(), "counts": dict(self.counts)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.counts = dict(state["counts"])


class SquareEnv(gym.Env):
    """64x64 pixel observations of a square that moves with the (one-hot) action; reward 1
    when it is in the right half. For pixel tests of the runtime (open-loop predictions)."""

    def __init__(self, seed: int = 0, time_limit: int = 30):
        self.observation_space = gym.spaces.Dict(
            {"image": gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)})
        self.action_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space.n = 2  # one-hot discrete, as distwm's adapters mark it
        self.time_limit = time_limit
        self._rng = np.random.default_rng(seed)
        self._x = self._t = 0

    def _obs(self) -> dict:
        image = np.zeros((3, 64, 64), np.uint8)
        image[:, 24:40, self._x:self._x + 16] = 255
        return {"image": image}

    def reset(self, *, seed: int | None = None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._x, self._t = int(self._rng.integers(0, 48)), 0
        return self._obs(), {}

    def step(self, action):
        self._x = int(np.clip(self._x + (8 if np.argmax(action) else -8), 0, 48))
        self._t += 1
        return self._obs(), float(self._x >= 24), False, self._t >= self.time_limit, {}


def make_square_env(config: Any, seed: int) -> SquareEnv:
    return SquareEnv(seed=seed)


def square_backend(env_id: str, **kwargs) -> SquareEnv:
    """An env-backend factory (``register_env_backend``) for the square env."""
    return SquareEnv(seed=int(kwargs.get("seed") or 0))


def check_final_eval(final: dict, episodes: int, max_length: int, reward_per_step: float = 1.0) -> None:
    """The run's last evaluation: ``episodes`` whole episodes of at most ``max_length`` steps,
    returns within what ``reward_per_step`` (at most, >= 0) allows, their mean reported, and
    acted with weights from the learner (version > 0)."""
    import math

    assert final is not None, "the run reported no final evaluation"
    returns, lengths = final["returns"], final["lengths"]
    assert len(returns) == len(lengths) == episodes, final
    assert all(1 <= n <= max_length for n in lengths), lengths
    assert all(0.0 <= r <= reward_per_step * n for r, n in zip(returns, lengths)), (returns, lengths)
    assert math.isclose(final["return_mean"], sum(returns) / episodes, rel_tol=1e-9)
    assert final["version"] > 0
