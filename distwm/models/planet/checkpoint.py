"""PlaNet checkpoints in the one format (:mod:`distwm.utils.checkpoint`): the RSSM, its Adam
state and the counters, checked against the agent's architecture before anything loads."""

from __future__ import annotations

from typing import Any, Mapping

from distwm.utils.checkpoint import check_state, checkpoint_format, cpu_state, make_state

__all__ = ["CHECKPOINT_FORMAT", "ARCHITECTURE_FIELDS", "CheckpointMixin"]

CHECKPOINT_FORMAT = checkpoint_format("planet", 1)

#: PlanetConfig fields that decide the networks; a checkpoint must agree on them.
ARCHITECTURE_FIELDS = ("state_size", "latent_size", "hidden_size", "embedding_size", "activation")

_REQUIRED = ("rssm", "optimizer", "updates")


class CheckpointMixin:
    """``state_dict`` / ``load_state_dict`` of :class:`~distwm.models.planet.core.PlanetCore`."""

    def _architecture(self) -> dict[str, Any]:
        arch = {name: getattr(self.config, name) for name in ARCHITECTURE_FIELDS}
        arch.update(obs_shape=list(self.rssm.obs_shape), action_size=self.rssm.action_size,
                    discrete=bool(self.discrete))
        return arch

    def state_dict(self) -> dict[str, Any]:
        """The RSSM (CPU tensors), the optimiser and the counters."""
        return make_state(CHECKPOINT_FORMAT, self._architecture(), config=self.config.to_dict(),
                          rssm=cpu_state(self.rssm.state_dict()), optimizer=self.optimizer.state_dict(),
                          updates=self.updates, nonfinite_updates=self.nonfinite_updates)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; a mismatched architecture raises ``ValueError``
        naming every field that differs."""
        check_state(state, CHECKPOINT_FORMAT, self._architecture(), "Planet", _REQUIRED)
        try:
            self.rssm.load_state_dict(state["rssm"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(f"Planet checkpoint tensors do not fit this agent: {exc}") from exc
        self.updates = int(state["updates"])
        self.nonfinite_updates = int(state.get("nonfinite_updates", 0))
