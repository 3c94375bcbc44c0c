"""The replayed-value loss of the current dreamerv3 code (``repval``, 2024).

Besides the imagined returns, the critic regresses lambda returns computed on the *replayed*
sequence itself: the rewards and terminations of the data, bootstrapped at every step with the
imagined lambda return that starts from that step's posterior state. This anchors the critic
to the returns the agent really saw (the imagined ones alone can drift with the world model).

With ``B x T`` replayed steps, ``boot[b, t]`` the imagined return from state ``(b, t)``,
``c_t = 1 - last_t`` and ``l_t = gamma * (1 - terminal_t)``, for ``t = 0 .. T-2``::

    R_t = r_{t+1} + l_{t+1} * ((1 - lam * c_{t+1}) * boot_{t+1} + lam * c_{t+1} * R_{t+1}),
    R_{T-1} = boot_{T-1}

so a step whose successor ends an episode (``last``) bootstraps from the imagined return alone.
The loss is the critic's negative log-likelihood of ``R_t`` (plus the slow-critic regulariser,
as in imagination), weighted by ``1 - last_t`` and averaged over ``B x (T - 1)``. With
``repval_grad`` the gradient also reaches the world model through the posterior features.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

__all__ = ["replay_lambda_returns", "replay_last", "replayed_value_loss"]


def replay_last(data: Mapping[str, Tensor]) -> Tensor:
    """``(B, T)`` bool: the last step of an episode inside the batch. ``is_last`` when the batch
    has it, and in any case a terminal step or a step followed by ``is_first``."""
    last = data["is_terminal"].bool().clone()
    if "is_last" in data:
        last |= data["is_last"].bool()
    last[:, :-1] |= data["is_first"].bool()[:, 1:]
    return last


def replay_lambda_returns(reward: Tensor, terminal: Tensor, last: Tensor, boot: Tensor,
                          discount: float, lam: float) -> Tensor:
    """``(B, T - 1)`` lambda returns of the replayed steps ``0 .. T-2`` (module docstring);
    every argument is ``(B, T)`` (``terminal`` and ``last`` as 0/1 or bool)."""
    live = (1.0 - terminal[:, 1:].float()) * discount
    cont = (1.0 - last[:, 1:].float()) * lam
    interm = reward[:, 1:] + (1.0 - cont) * live * boot[:, 1:]
    ret = boot[:, -1]
    out = []
    for t in range(reward.shape[1] - 2, -1, -1):
        ret = interm[:, t] + live[:, t] * cont[:, t] * ret
        out.append(ret)
    out.reverse()
    return torch.stack(out, 1) if out else reward[:, :0]


def replayed_value_loss(behavior, world_model, post: Mapping[str, Tensor], data: Mapping[str, Tensor],
                        imag_returns: Tensor, grad: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """``(loss, metrics)`` of the replayed-value loss (unscaled).

    ``post``: the posterior states ``(B, T, ...)`` of the world-model loss; ``imag_returns``:
    the imagined returns ``(H, B * T)`` started from them (batch-major); ``grad``: let the
    gradient reach the world model through the features.
    """
    cfg = behavior.cfg
    feat = world_model.rssm.get_feat(post)
    if not grad:
        feat = feat.detach()
    reward = data["reward"].float()
    batch, steps = reward.shape
    boot = imag_returns[0].detach().reshape(batch, steps)
    last = replay_last(data)
    returns = replay_lambda_returns(reward, data["is_terminal"], last, boot, cfg.discount,
                                    cfg.td_lambda).detach()
    head = feat[:, :-1]
    dist = behavior.critic.dist_from_raw(behavior.critic.mlp(head))
    loss = -dist.log_prob(returns)
    if cfg.slow_critic_reg > 0:
        with torch.no_grad():
            slow = behavior.slow_critic(head.detach()).mode()
        loss = loss - cfg.slow_critic_reg * dist.log_prob(slow)
    loss = ((1.0 - last[:, :-1].float()) * loss).mean()
    return loss, {"repval_loss": loss.detach(), "repval_return": returns.mean()}
