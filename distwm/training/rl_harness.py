"""PPO over distwm's subprocess vector envs (the seed's ``world_models.training.rl_harness``).

A small, complete PPO (as CleanRL's ``ppo.py``) over a :class:`~distwm.envs.vector_env.VectorizedEnv`
(torch or numpy flavour). Observations: ``image`` (uint8 ``(C, H, W)``; a CNN) when present,
else ``state`` (float32 ``(D,)``; tanh MLPs), or a plain ``Box``. Actions follow the env: one-hot
vectors (``OneHotBox``), indices (``Discrete``) or, for a ``Box``, a diagonal Gaussian with a
learned log-std (:class:`GaussianActorCritic`) clipped to the bounds. GAE bootstraps from the
value after the last step and through time limits (a truncated, not terminated, step gets
``gamma * V(final_observation)`` added to its reward). Updates: ``num_epochs`` epochs of shuffled
minibatches of ``batch_size``, per-minibatch advantage normalisation, clipped surrogate, clipped
value loss, entropy bonus, gradient-norm clipping; ``train`` anneals the learning rate to 0.

>>> trainer = create_rl_harness_example()     # CartPole-v1, 2 x 4 envs; starts nothing yet
>>> history = trainer.train(50_000)           # doctest: +SKIP  (prints progress)
>>> trainer.close()
"""

from __future__ import annotations

import functools
import time
from typing import Any, Dict, List, Optional

import gymnasium
import numpy as np
import torch
from torch import Tensor

from distwm.envs.wrappers import OneHotBox
from distwm.training.rl_harness_networks import ActorCritic, GaussianActorCritic
from distwm.utils.devices import resolve_device
from distwm.utils.gradient_step import optimizer_step

__all__ = ["ActorCritic", "GaussianActorCritic", "PPOTrainer", "create_rl_harness_example"]

_TRAJECTORY_KEYS = ("obs", "actions", "log_probs", "values", "rewards", "dones")


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


class PPOTrainer:
    """Simple PPO trainer for testing vectorized environments.

    ``vec_env``: a :class:`~distwm.envs.vector_env.TorchVectorizedEnv` (or the numpy one);
    ``batch_size`` is the minibatch size of the updates. Attributes that may be set before
    training: ``rollout_steps`` (transitions per update in :meth:`train`, default 2048) and
    ``anneal_lr``. The network and the optimiser are built on first use (this asks the env for
    its spaces, which starts its workers), not in the constructor. Completed episodes are
    recorded in ``episode_returns`` / ``episode_lengths`` / ``episode_end_steps``.
    """

    def __init__(self, vec_env: Any, device: str = "cpu", lr: float = 0.0003, gamma: float = 0.99,
                 gae_lambda: float = 0.95, clip_ratio: float = 0.2, num_epochs: int = 10,
                 batch_size: int = 64, max_grad_norm: float = 0.5, entropy_coeff: float = 0.01,
                 value_coeff: float = 0.5):
        for method in ("reset_batch", "step_batch"):
            if not callable(getattr(vec_env, method, None)):
                raise ValueError(f"vec_env must be a distwm VectorizedEnv (it has no {method}()), got {vec_env!r}")
        checks = (("lr", lr, lr > 0, "> 0"), ("gamma", gamma, 0 <= gamma <= 1, "in [0, 1]"),
                  ("gae_lambda", gae_lambda, 0 <= gae_lambda <= 1, "in [0, 1]"),
                  ("clip_ratio", clip_ratio, clip_ratio > 0, "> 0"),
                  ("max_grad_norm", max_grad_norm, max_grad_norm > 0, "> 0"),
                  ("entropy_coeff", entropy_coeff, entropy_coeff >= 0, ">= 0"),
                  ("value_coeff", value_coeff, value_coeff >= 0, ">= 0"))
        for name, value, valid, rule in checks:
            if not valid:
                raise ValueError(f"{name} must be {rule}, got {value!r}")
        for name, value in (("num_epochs", num_epochs), ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.vec_env, self.device = vec_env, resolve_device(device)
        self.lr, self.gamma, self.gae_lambda, self.clip_ratio = lr, gamma, gae_lambda, clip_ratio
        self.num_epochs, self.batch_size, self.max_grad_norm = num_epochs, batch_size, max_grad_norm
        self.entropy_coeff, self.value_coeff = entropy_coeff, value_coeff
        self.rollout_steps, self.anneal_lr, self.global_step = 2048, True, 0
        self.episode_returns: List[float] = []  # with episode_lengths, episode_end_steps
        self.episode_lengths, self.episode_end_steps = [], []
        self._policy: Optional[ActorCritic] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self._obs: Optional[Tensor] = None
        self._running_return = self._running_length = None

    # -- spaces and the network (built on first use) ----------------------------------------
    def _build(self) -> None:
        obs_space, action_space = self.vec_env.observation_space, self.vec_env.action_space
        if isinstance(obs_space, gymnasium.spaces.Dict):
            keys = [key for key in ("image", "state") if key in obs_space.spaces]
            if not keys:
                raise ValueError(f"Dict observations need an 'image' or 'state' entry, got {list(obs_space.spaces)}")
            self.obs_key: Optional[str] = keys[0]
            obs_shape = obs_space[keys[0]].shape
        else:
            self.obs_key, obs_shape = None, obs_space.shape
        if isinstance(action_space, OneHotBox):
            self.action_format, network = "one_hot", ActorCritic(obs_shape, action_space.n)
        elif isinstance(action_space, gymnasium.spaces.Discrete):
            self.action_format, network = "index", ActorCritic(obs_shape, int(action_space.n))
        elif isinstance(action_space, gymnasium.spaces.Box) and len(action_space.shape) == 1:
            self.action_format, network = "continuous", GaussianActorCritic(obs_shape, action_space.shape[0])
        else:
            raise ValueError(f"Unsupported action space {action_space}: PPOTrainer acts in one-hot "
                             "(OneHotBox), Discrete or 1-D Box action spaces")
        self._action_space = action_space
        self._policy = network.to(self.device)
        self.optimizer = torch.optim.Adam(self._policy.parameters(), lr=self.lr, eps=1e-5)

    @property
    def policy(self) -> ActorCritic:
        """The actor-critic network (built from the env's spaces on first access)."""
        if self._policy is None:
            self._build()
        return self._policy

    def _built_optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self._build()
        return self.optimizer

    def _obs_tensor(self, obs: Any) -> Tensor:
        """A batch of observations (a dict of arrays, or a list of single observations) as a tensor."""
        select = (lambda item: item[self.obs_key]) if self.obs_key else (lambda item: item)
        batch = np.stack([_numpy(select(item)) for item in obs]) if isinstance(obs, list) else select(obs)
        return torch.as_tensor(batch, device=self.device)

    def _env_actions(self, actions: Tensor) -> np.ndarray:
        actions = _numpy(actions)
        if self.action_format == "one_hot":
            return np.eye(self._action_space.n, dtype=np.float32)[actions]
        if self.action_format == "index":
            return actions.astype(np.int64) + int(self._action_space.start)
        space = self._action_space
        return np.clip(actions, space.low, space.high).astype(space.dtype)

    # -- PPO --------------------------------------------------------------------------------
    def collect_trajectories(self, num_steps: int) -> Dict[str, Tensor]:
        """Collect ``num_steps // num_envs`` steps of every env (episodes continue across calls).

        Returns time-major tensors ``(T, N, ...)``: ``obs``, ``actions``, ``log_probs``,
        ``values``, ``rewards``, ``dones`` (terminated or truncated), ``terminated``,
        ``truncated``, ``truncation_values`` (``V(final_observation)`` where truncated and not
        terminated, else 0) and ``next_value`` ``(N,)``, the value after the last step.
        """
        num_envs = self.vec_env.num_envs
        if not isinstance(num_steps, int) or num_steps < num_envs:
            raise ValueError(f"num_steps must be an int >= num_envs={num_envs}, got {num_steps!r}")
        policy = self.policy
        if self._obs is None:
            self._obs = self._obs_tensor(self.vec_env.reset_batch()["obs"])
            self._running_return, self._running_length = np.zeros(num_envs), np.zeros(num_envs, np.int64)
        columns: Dict[str, list] = {key: [] for key in (*_TRAJECTORY_KEYS, "terminated", "truncated", "truncation_values")}
        for _ in range(num_steps // num_envs):
            with torch.no_grad():
                action, log_prob, value = policy.get_action(self._obs)
            result = self.vec_env.step_batch(self._env_actions(action))
            reward = _numpy(result["reward"]).astype(np.float32)
            terminated, truncated = _numpy(result["terminated"]).astype(bool), _numpy(result["truncated"]).astype(bool)
            truncation_values = np.zeros(num_envs, np.float32)
            bootstrap = np.flatnonzero(truncated & ~terminated)
            if bootstrap.size:
                final_obs = self._obs_tensor([result["info"][i]["final_observation"] for i in bootstrap])
                with torch.no_grad():
                    truncation_values[bootstrap] = _numpy(policy(final_obs)[1].squeeze(-1))
            self.global_step += num_envs
            self._record_episodes(reward, terminated | truncated)
            step = {"obs": self._obs, "actions": action, "log_probs": log_prob, "values": value.squeeze(-1),
                    "rewards": reward, "dones": terminated | truncated, "terminated": terminated,
                    "truncated": truncated, "truncation_values": truncation_values}
            for key, item in step.items():
                columns[key].append(torch.as_tensor(item, device=self.device))
            self._obs = self._obs_tensor(result["obs"])
        with torch.no_grad():
            next_value = policy(self._obs)[1].squeeze(-1)
        return {**{key: torch.stack(items) for key, items in columns.items()}, "next_value": next_value}

    def _record_episodes(self, reward: np.ndarray, done: np.ndarray) -> None:
        self._running_return += reward
        self._running_length += 1
        for index in np.flatnonzero(done):
            self.episode_returns.append(float(self._running_return[index]))
            self.episode_lengths.append(int(self._running_length[index]))
            self.episode_end_steps.append(self.global_step)
        self._running_return[done], self._running_length[done] = 0.0, 0

    def compute_gae(self, rewards: Tensor, values: Tensor, dones: Tensor) -> Tensor:
        """Compute Generalized Advantage Estimation over time-major ``(T, ...)`` tensors.

        ``dones[t]``: the episode ended at step ``t`` (no value flows back across it).
        ``values`` has ``T + 1`` rows (the last: the value of the observation after step
        ``T - 1``, bootstrapped unless ``dones[T - 1]``) or ``T`` rows (nothing after the last
        step). Returns the advantages, shaped like ``rewards``.
        """
        rewards = torch.as_tensor(rewards)
        rewards = rewards if rewards.is_floating_point() else rewards.float()
        values = torch.as_tensor(values, dtype=rewards.dtype, device=rewards.device)
        not_done = 1.0 - torch.as_tensor(dones, device=rewards.device).to(rewards.dtype)
        steps = rewards.shape[0]
        if values.shape[0] == steps + 1:
            values, last_value = values[:steps], values[steps]
        elif values.shape[0] == steps:
            last_value = torch.zeros_like(values[0])
        else:
            raise ValueError(f"values must have T or T + 1 = {steps + 1} rows for T = {steps} rewards, "
                             f"got shape {tuple(values.shape)}")
        if values.shape != rewards.shape or not_done.shape != rewards.shape:
            raise ValueError(f"rewards {tuple(rewards.shape)}, values (first T rows) {tuple(values.shape)} and "
                             f"dones {tuple(not_done.shape)} must have the same shape")
        advantages = torch.empty_like(rewards)
        running = torch.zeros_like(last_value)
        for t in reversed(range(steps)):
            next_value = last_value if t == steps - 1 else values[t + 1]
            delta = rewards[t] + self.gamma * next_value * not_done[t] - values[t]
            running = delta + self.gamma * self.gae_lambda * not_done[t] * running
            advantages[t] = running
        return advantages

    def compute_advantages(self, trajectories: Dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(advantages, returns)`` ``(T, N)`` of :meth:`collect_trajectories` output: GAE with
        ``gamma * truncation_values`` added to the rewards (bootstrapping through time limits)
        and ``next_value`` after the last step (both optional keys)."""
        values = trajectories["values"]
        rewards = trajectories["rewards"] + self.gamma * trajectories.get("truncation_values", torch.zeros_like(values))
        if "next_value" in trajectories:
            values = torch.cat([values, trajectories["next_value"][None]])
        advantages = self.compute_gae(rewards, values, trajectories["dones"])
        return advantages, advantages + trajectories["values"]

    def train_step(self, trajectories: Dict[str, Tensor]) -> Dict[str, float]:
        """Perform one training step using PPO (``num_epochs`` epochs of minibatches) on
        :meth:`collect_trajectories` output; returns mean losses and diagnostics."""
        missing = [key for key in _TRAJECTORY_KEYS if key not in trajectories]
        if missing:
            raise ValueError(f"trajectories lack {missing}; expected the keys of collect_trajectories()")
        policy, optimizer = self.policy, self._built_optimizer()
        advantages, returns = (item.reshape(-1) for item in self.compute_advantages(trajectories))
        count = advantages.shape[0]
        obs, actions, old_log_probs, old_values = (trajectories[key].reshape(count, *trajectories[key].shape[2:])
                                                   for key in ("obs", "actions", "log_probs", "values"))
        totals: Dict[str, float] = {}
        updates = 0
        for _ in range(self.num_epochs):
            order = torch.randperm(count, device=advantages.device)
            for start in range(0, count, self.batch_size):
                index = order[start:start + self.batch_size]
                log_prob, entropy, value = policy.evaluate_actions(obs[index], actions[index])
                log_ratio = log_prob - old_log_probs[index]
                ratio = log_ratio.exp()
                advantage = advantages[index]
                if advantage.numel() > 1:
                    advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
                clipped_ratio = ratio.clamp(1 - self.clip_ratio, 1 + self.clip_ratio)
                policy_loss = torch.max(-advantage * ratio, -advantage * clipped_ratio).mean()
                value = value.squeeze(-1)
                clipped_value = old_values[index] + (value - old_values[index]).clamp(-self.clip_ratio, self.clip_ratio)
                value_loss = 0.5 * torch.max((value - returns[index]) ** 2,
                                             (clipped_value - returns[index]) ** 2).mean()
                entropy = entropy.mean()
                loss = policy_loss - self.entropy_coeff * entropy + self.value_coeff * value_loss
                step = optimizer_step(policy, optimizer, loss, self.max_grad_norm)
                with torch.no_grad():
                    metrics = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
                               "approx_kl": ((ratio - 1) - log_ratio).mean(), "grad_norm": step["grad_norm"],
                               "clip_fraction": ((ratio - 1).abs() > self.clip_ratio).float().mean()}
                for key, item in metrics.items():
                    totals[key] = totals.get(key, 0.0) + float(item.detach() if torch.is_tensor(item) else item)
                updates += 1
        result = {key: total / updates for key, total in totals.items()}
        variance = float(returns.var()) if count > 1 else 0.0
        result["explained_variance"] = (float("nan") if variance == 0 else
                                        1.0 - float((returns - old_values).var()) / variance)
        return result

    def train(self, total_timesteps: int, log_interval: int = 1000) -> Dict[str, Any]:
        """Main training loop: rollouts of ``rollout_steps`` transitions, each followed by
        :meth:`train_step`, until ``total_timesteps`` more env steps were taken. Prints steps/s,
        ETA and the mean return of the last 100 episodes whenever another ``log_interval`` steps
        are done. Returns ``episode_returns`` / ``episode_lengths`` / ``episode_end_steps`` of
        the episodes finished in this call, per-update ``iterations`` metrics and ``timesteps``."""
        for name, value in (("total_timesteps", total_timesteps), ("log_interval", log_interval)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        start_step, first_episode = self.global_step, len(self.episode_returns)
        started, next_log = time.monotonic(), log_interval
        iterations: List[Dict[str, float]] = []
        while (done := self.global_step - start_step) < total_timesteps:
            if self.anneal_lr:
                for group in self._built_optimizer().param_groups:
                    group["lr"] = self.lr * (1.0 - done / total_timesteps)
            num_steps = max(self.vec_env.num_envs, min(int(self.rollout_steps), total_timesteps - done))
            metrics = self.train_step(self.collect_trajectories(num_steps))
            done, elapsed = self.global_step - start_step, time.monotonic() - started
            metrics.update(timesteps=float(self.global_step), steps_per_second=done / max(elapsed, 1e-9))
            iterations.append(metrics)
            if done >= next_log or done >= total_timesteps:
                recent = self.episode_returns[first_episode:][-100:]
                mean_return = f"{np.mean(recent):.1f}" if recent else "n/a"
                eta = max(total_timesteps - done, 0) / metrics["steps_per_second"]
                print(f"[ppo] step {done}/{total_timesteps} | {metrics['steps_per_second']:.0f} steps/s | "
                      f"ETA {eta:.0f} s | mean return (last {len(recent)} episodes) {mean_return}", flush=True)
                next_log = (done // log_interval + 1) * log_interval
        return {"episode_returns": self.episode_returns[first_episode:],
                "episode_lengths": self.episode_lengths[first_episode:],
                "episode_end_steps": self.episode_end_steps[first_episode:],
                "iterations": iterations, "timesteps": self.global_step}

    def close(self) -> None:
        """Close the vector env (its worker processes)."""
        self.vec_env.close()


def create_rl_harness_example() -> PPOTrainer:
    """Example function to create and run the RL harness.

    Builds a CartPole-v1 :class:`~distwm.envs.vector_env.TorchVectorizedEnv` (2 workers x 4
    envs, ``state`` observations, seed 42) and a :class:`PPOTrainer` over it, and returns the
    trainer without training it or starting any process. Usage:
    ``trainer = create_rl_harness_example(); trainer.train(50_000); trainer.close()``.
    """
    from distwm.envs.gym_env import make_gym_env
    from distwm.envs.vector_env import TorchVectorizedEnv

    factory = functools.partial(make_gym_env, "CartPole-v1", obs_type="state")
    vec_env = TorchVectorizedEnv(factory, num_workers=2, envs_per_worker=4, seed=42)
    return PPOTrainer(vec_env, device="cpu")
