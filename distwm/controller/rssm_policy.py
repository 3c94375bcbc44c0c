"""Model-predictive control with the cross-entropy method (CEM) in an RSSM's latent space."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["RSSMPolicy", "cem_plan"]


def _bounds(value: Any, size: int, device: Any) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value, dtype=np.float32), device=device)
    return tensor.expand(size).clone() if tensor.dim() == 0 else tensor.reshape(size)


@torch.no_grad()
def cem_plan(
    model,
    h: torch.Tensor,
    s: torch.Tensor,
    planning_horizon: int,
    num_candidates: int,
    num_iterations: int,
    top_candidates: int,
    action_low: torch.Tensor,
    action_high: torch.Tensor,
    discrete: bool = False,
) -> torch.Tensor:
    """Plan from the latent states ``(h, s)`` (B, ...) of ``B`` envs at once; returns the
    first action of each plan, ``(B, action_size)``.

    Continuous actions: a diagonal Gaussian over action sequences, refit to the
    ``top_candidates`` best of ``num_candidates`` samples (clipped to the bounds) for
    ``num_iterations`` rounds; the plan is the final mean. Discrete (one-hot) actions: the same
    with independent categoricals per step, refit to the elites' action frequencies; the
    plan is the most probable action. Returns are the sums of the model's predicted rewards
    over imagined prior rollouts (``model.rollout_prior`` and ``model.pred_reward``).
    """
    batch, horizon, d = h.shape[0], planning_horizon, model.action_size
    n, k = num_candidates, top_candidates
    h_rep, s_rep = h.repeat_interleave(n, dim=0), s.repeat_interleave(n, dim=0)
    if discrete:
        probs = torch.full((batch, horizon, d), 1.0 / d, device=h.device)
    else:
        mean = ((action_low + action_high) / 2).expand(batch, horizon, d).clone()
        std = ((action_high - action_low) / 2).expand(batch, horizon, d).clone()
    for _ in range(num_iterations):
        if discrete:
            index = torch.multinomial(probs.reshape(-1, d), n, replacement=True)  # (B*H, N)
            index = index.reshape(batch, horizon, n).permute(0, 2, 1)  # (B, N, H)
            candidates = torch.nn.functional.one_hot(index, d).to(h.dtype)
        else:
            noise = torch.randn(batch, n, horizon, d, device=h.device, dtype=h.dtype)
            candidates = mean.unsqueeze(1) + std.unsqueeze(1) * noise
            candidates = torch.maximum(torch.minimum(candidates, action_high), action_low)
        actions = candidates.reshape(batch * n, horizon, d).transpose(0, 1)
        states, latents = model.rollout_prior(actions, h_rep, s_rep)
        returns = model.pred_reward(states, latents).reshape(horizon, batch, n).sum(0)
        top = returns.topk(k, dim=1).indices  # (B, K)
        elites = candidates.gather(1, top[:, :, None, None].expand(batch, k, horizon, d))
        if discrete:
            probs = (elites.mean(1) + 1e-3) / (1.0 + 1e-3 * d)
        else:
            mean, std = elites.mean(1), elites.std(1, unbiased=False)
    if discrete:
        return torch.nn.functional.one_hot(probs[:, 0].argmax(-1), d).to(h.dtype)
    return mean[:, 0]


class RSSMPolicy:
    """Model-predictive controller using the Cross-Entropy Method (CEM) with an RSSM.

    Plans actions by optimizing a sequence of future actions in the RSSM's latent space:

    1. initialize a Gaussian over action sequences;
    2. sample N candidate action sequences;
    3. roll each out in the RSSM's latent space (prior);
    4. score by predicted cumulative reward;
    5. keep the top K candidates, fit the Gaussian to them;
    6. repeat for T iterations;
    7. execute the first action of the final plan.

    All candidates of all envs are rolled out as one batch on ``device``.

    Args:
        model: a :class:`~distwm.models.planet.networks.RecurrentStateSpaceModel` (or anything with
            ``action_size``, ``state_size``, ``latent_size``, ``encoder``,
            ``get_init_state``, ``rollout_prior`` and ``pred_reward``).
        planning_horizon: number of future steps to plan (H).
        num_candidates: action sequences sampled per iteration (N).
        num_iterations: CEM refinement iterations (T).
        top_candidates: elite sequences the distribution is refit to (K).
        device: torch device.
        action_low, action_high: action bounds (scalars or per-dimension), default [-1, 1].
        action_noise: std of the Gaussian exploration noise added by ``poll(..., explore=True)``.
        discrete: plan over one-hot actions (CEM on categoricals).

    Usage::

        policy = RSSMPolicy(model=rssm, planning_horizon=12, num_candidates=1000,
                            num_iterations=8, top_candidates=100, device="cuda")
        policy.reset()
        action = policy.poll(observation)  # (1, action_dim)
    """

    def __init__(
        self,
        model,
        planning_horizon: int,
        num_candidates: int,
        num_iterations: int,
        top_candidates: int,
        device: Any,
        action_low: Any = -1.0,
        action_high: Any = 1.0,
        action_noise: float = 0.3,
        discrete: bool = False,
    ):
        for name, value in (("planning_horizon", planning_horizon), ("num_candidates", num_candidates),
                            ("num_iterations", num_iterations), ("top_candidates", top_candidates)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"RSSMPolicy: {name} must be a positive int, got {value!r}")
        if top_candidates > num_candidates:
            raise ValueError(
                f"RSSMPolicy: top_candidates ({top_candidates}) cannot exceed num_candidates ({num_candidates})"
            )
        if action_noise < 0:
            raise ValueError(f"RSSMPolicy: action_noise must be >= 0, got {action_noise!r}")
        self.rssm = model
        self.H, self.N, self.T, self.K = planning_horizon, num_candidates, num_iterations, top_candidates
        self.d = model.action_size
        self.device = torch.device(device)
        self.action_low = _bounds(action_low, self.d, self.device)
        self.action_high = _bounds(action_high, self.d, self.device)
        if bool((self.action_low >= self.action_high).any()):
            raise ValueError(
                f"RSSMPolicy: action_low {self.action_low.tolist()} must be below action_high "
                f"{self.action_high.tolist()}"
            )
        self.action_noise = float(action_noise)
        self.discrete = discrete
        self.reset()

    def reset(self, batch_size: int = 1) -> None:
        """Forget the filtered state: zero ``h``, ``s`` and the previous action ``a``."""
        self.h = torch.zeros(batch_size, self.rssm.state_size, device=self.device)
        self.s = torch.zeros(batch_size, self.rssm.latent_size, device=self.device)
        self.a = torch.zeros(batch_size, self.d, device=self.device)

    @torch.no_grad()
    def observe(self, observation: torch.Tensor) -> None:
        """Update the filtered state ``(h, s)`` with a preprocessed observation batch."""
        embed = self.rssm.encoder(observation.to(self.device))
        self.h, self.s = self.rssm.get_init_state(embed, self.h, self.s, self.a, mean=True)

    def plan(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """First action of the CEM plan from each latent state, ``(B, action_size)``."""
        return cem_plan(self.rssm, h, s, self.H, self.N, self.T, self.K,
                        self.action_low, self.action_high, self.discrete)

    def explore(self, action: torch.Tensor) -> torch.Tensor:
        """Exploration: Gaussian noise (continuous, then clipped) or, for one-hot actions, a
        uniformly random action with probability ``action_noise``."""
        if self.discrete:
            flip = torch.rand(action.shape[0], device=action.device) < self.action_noise
            random = torch.nn.functional.one_hot(
                torch.randint(self.d, (action.shape[0],), device=action.device), self.d
            ).to(action.dtype)
            return torch.where(flip[:, None], random, action)
        noisy = action + self.action_noise * torch.randn_like(action)
        return torch.maximum(torch.minimum(noisy, self.action_high), self.action_low)

    @torch.no_grad()
    def poll(self, observation, explore: bool = False) -> torch.Tensor:
        """Filter ``observation`` (preprocessed, one ``(*obs_shape)`` or a batch) and return
        the planned action ``(B, action_dim)`` (noisy with ``explore=True``)."""
        obs = torch.as_tensor(observation, dtype=torch.float32, device=self.device)
        if obs.dim() == len(getattr(self.rssm, "obs_shape", obs.shape[1:])):
            obs = obs.unsqueeze(0)
        if obs.shape[0] != self.h.shape[0]:
            if self.h.abs().sum() == 0 and self.a.abs().sum() == 0:
                self.reset(obs.shape[0])
            else:
                raise ValueError(
                    f"poll: got {obs.shape[0]} observations for a policy filtering {self.h.shape[0]}; "
                    "call reset(batch_size) first"
                )
        self.observe(obs)
        action = self.plan(self.h, self.s)
        if explore:
            action = self.explore(action)
        self.a = action
        return action
