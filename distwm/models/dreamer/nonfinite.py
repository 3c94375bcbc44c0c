"""Dreamer's guard against non-finite updates: a skipped update is counted and logged, and
``max_nonfinite_updates`` in a row raise :class:`~distwm.agent.NonFiniteLossError`. With a
learner group (:mod:`distwm.utils.distributed`) a rank that skips still joins the sync point it
leaves out, with NaN gradients, so every rank skips the same step."""

from __future__ import annotations

import logging

from torch import Tensor

from distwm.agent import NonFiniteLossError
from distwm.utils import distributed

__all__ = ["NonFiniteGuardMixin"]

_log = logging.getLogger("distwm.models.dreamer.core")  # the logger these warnings always had


class NonFiniteGuardMixin:
    """``DreamerCore``'s skip-and-count of non-finite updates (it reads ``args``, ``behavior``,
    the three optimisers, ``updates``, ``nonfinite_updates`` and ``_nonfinite_streak``)."""

    def _skip_nonfinite(self, what: str, metrics: dict, join=None, restore=None) -> dict[str, float]:
        """Skip this update. With a learner group: ``join`` ``(params, extra)`` is the sync point
        this rank leaves out (joined with NaN gradients, so every rank skips the step too) and
        ``restore`` the return normaliser's state to put back (every rank skips alike)."""
        if join is not None:
            distributed.join_skipped(join[0], extra=join[1])
        if restore is not None:
            for buffer, saved in zip(self._return_norm_buffers(), restore):
                buffer.copy_(saved)
        if "gradient" in what and distributed.world_size() > 1:
            what = f"{what} (on this or another learner of the group)"
        self.nonfinite_updates += 1
        self._nonfinite_streak += 1
        for opt in (self.model_optimizer, self.actor_optimizer, self.value_optimizer):
            opt.zero_grad(set_to_none=True)
        _log.warning("Dreamer update %d: non-finite %s; update skipped (%d so far)",
                     self.updates, what, self.nonfinite_updates)
        if self._nonfinite_streak >= self.args.max_nonfinite_updates:
            raise NonFiniteLossError(
                f"Dreamer: {self._nonfinite_streak} consecutive updates had a non-finite {what} "
                f"(limit max_nonfinite_updates={self.args.max_nonfinite_updates}); the run "
                "diverged. Lower the learning rates, check the observations/rewards for "
                "NaN/inf, or raise grad clipping."
            )
        out = {k: float(v) for k, v in metrics.items()}
        out.update(skipped=1.0, nonfinite_updates=float(self.nonfinite_updates))
        return out

    def _return_norm_buffers(self) -> list[Tensor]:
        norm = self.behavior.return_norm
        return [norm.low, norm.high, norm.initialized]
