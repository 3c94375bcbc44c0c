"""DreamerV3's replay context (the current dreamerv3 code's ``replay_context``; V3-2024: 1).

Replay stores the latent state with every step: the policy's posterior when the step is
collected (:meth:`ReplayContextMixin.replay_entries`), overwritten by the posterior of every
update that trains on it (:meth:`ReplayContextMixin.replay_updates`, written back by the loop or
the runtime's learner through the step ids of the batch). A training sequence of
``K + train_seq_len`` steps then starts its RSSM at the latent stored at step ``K - 1`` instead
of the initial state, and the losses cover the last ``train_seq_len`` steps; the action that led
to step ``K`` is the batch's own (distwm's replay format, DESIGN.md "Data"). A step whose
latent was never computed (random prefill), or a batch without the entries, starts from the
initial state, as without context.

Stored per step (:func:`context_entries`): ``ctx_deter`` (float16), ``ctx_stoch`` (the class
index of each categorical latent; float16 values for Gaussian latents) and ``ctx_valid``. The
dreamerv3 code keeps these in bfloat16, its compute type; float16 keeps ``deter`` (a GRU state in
``[-1, 1]``) to 3 decimal digits, the class indices exactly.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from distwm.agent import DEFAULT_SAMPLE

__all__ = ["CONTEXT_KEYS", "ReplayContextMixin", "context_entries"]

CONTEXT_KEYS = ("ctx_deter", "ctx_stoch", "ctx_valid")


def context_entries(rssm) -> dict[str, tuple[tuple[int, ...], str]]:
    """``DataSpec.entries`` of a model with this RSSM: ``{name: (shape, dtype)}``."""
    if rssm.discrete:
        index = "uint8" if rssm.stoch_classes <= 256 else "int32"
        stoch = ((rssm.stoch_size,), index)
    else:
        stoch = ((rssm.stoch_dim,), "float16")
    return {"ctx_deter": ((rssm.deter_size,), "float16"), "ctx_stoch": stoch,
            "ctx_valid": ((), "bool")}


def encode_latent(rssm, deter: Tensor, stoch: Tensor) -> dict[str, np.ndarray]:
    """Replay entries of latents with any leading shape."""
    specs = context_entries(rssm)
    lead = deter.shape[:-1]
    if rssm.discrete:
        stoch = stoch.reshape(*lead, rssm.stoch_size, rssm.stoch_classes).argmax(-1)
    return {
        "ctx_deter": deter.detach().cpu().numpy().astype(np.float16),
        "ctx_stoch": stoch.detach().cpu().numpy().astype(specs["ctx_stoch"][1]),
        "ctx_valid": np.ones(tuple(lead), bool),
    }


def decode_latent(rssm, deter: Tensor, stoch: Tensor) -> dict[str, Tensor]:
    """``{"deter", "stoch"}`` float tensors from stored entries (as tensors)."""
    if rssm.discrete:
        stoch = F.one_hot(stoch.long(), rssm.stoch_classes).flatten(-2)
    return {"deter": deter.float(), "stoch": stoch.float()}


class ReplayContextMixin:
    """The replay-context half of :class:`~distwm.models.dreamer.core.DreamerCore`."""

    _context_post: dict[str, Tensor] | None = None
    _context_stepid: np.ndarray | None = None

    def replay_entries(self, state: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
        """The latent of the steps ``act`` just saw (``state``: what it returned), to store
        with them (``DataSpec.entries``); nothing without replay context."""
        if not self.args.replay_context:
            return {}
        return encode_latent(self.world_model.rssm, state["deter"], state["stoch"])

    def _apply_replay_context(self, data: dict[str, Tensor], batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Split a ``(B, K + T)`` batch: the stored latent at step ``K - 1`` becomes the start
        state (``start_deter`` / ``start_stoch``, read by :meth:`WorldModel.loss`), the last
        ``T`` steps are trained on. Remembers the step ids for :meth:`replay_updates`."""
        k = int(self.args.replay_context)
        steps = data["reward"].shape[1]
        if steps <= k:
            raise ValueError(f"update() batch has {steps} steps; replay_context={k} needs "
                             f"replay_context + train_seq_len = {k + self.args.train_seq_len}")
        rssm = self.world_model.rssm
        ctx = {key: data.pop(key) for key in CONTEXT_KEYS if key in data}
        out = {key: value[:, k:] for key, value in data.items()}
        init = rssm.init_state(data["reward"].shape[0], data["reward"].device)
        if ctx:
            stored = decode_latent(rssm, ctx["ctx_deter"][:, k - 1], ctx["ctx_stoch"][:, k - 1])
            valid = ctx["ctx_valid"][:, k - 1].bool().unsqueeze(-1)
            out["start_deter"] = torch.where(valid, stored["deter"], init["deter"])
            out["start_stoch"] = torch.where(valid, stored["stoch"], init["stoch"])
        else:  # a batch without stored latents (not from a replay with the entries)
            out["start_deter"], out["start_stoch"] = init["deter"], init["stoch"]
        stepid = batch.get("stepid")
        self._context_stepid = None if stepid is None else np.asarray(stepid)[:, k:]
        self._context_post = None
        return out

    def _remember_posterior(self, post: Mapping[str, Tensor]) -> None:
        if self.args.replay_context and self._context_stepid is not None:
            self._context_post = {"deter": post["deter"].detach(), "stoch": post["stoch"].detach()}

    def replay_updates(self) -> dict[str, dict[str, np.ndarray]] | None:
        """The posterior latents of the last update's batch, for replay to store at its steps
        (``{sample name: {"stepid": (B, T), ctx_*: ...}}``); ``None`` when there is nothing
        (no replay context, no step ids in the batch, or a non-finite posterior)."""
        post, stepid = self._context_post, self._context_stepid
        self._context_post = self._context_stepid = None
        if post is None or stepid is None or not torch.isfinite(post["deter"]).all():
            return None
        entries = encode_latent(self.world_model.rssm, post["deter"], post["stoch"])
        return {DEFAULT_SAMPLE: {"stepid": stepid, **entries}}
