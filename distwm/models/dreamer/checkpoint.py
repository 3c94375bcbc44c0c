"""Dreamer checkpoints in the one format (:mod:`distwm.utils.checkpoint`): networks, optimisers
and counters in one ``torch.save`` file that loads with ``weights_only=True``; corrupt or
mismatched files raise errors that say why."""

from __future__ import annotations

from typing import Any, Mapping

from distwm.utils.checkpoint import (check_state, checkpoint_format, cpu_state, load_file, make_state,
                                     restore_file, save_file)

__all__ = ["CheckpointMixin", "CHECKPOINT_FORMAT", "ARCHITECTURE_FIELDS", "ARCHITECTURE_BEFORE_2024",
           "load_checkpoint_file"]

CHECKPOINT_FORMAT = checkpoint_format("dreamer", 1)

#: Config fields that decide the shapes of the networks; a checkpoint must agree on them.
ARCHITECTURE_FIELDS = (
    "latent", "deter_size", "stoch_size", "stoch_classes", "num_units", "num_layers",
    "cnn_depth", "obs_embed_size", "activation", "layer_norm", "reward_head", "critic_head",
    "num_buckets", "use_disc_model", "learned_initial_state", "actor_dist",
    # added with the v3-2024 recipe (see ARCHITECTURE_BEFORE_2024)
    "norm", "deter_blocks", "prior_layers", "head_layers", "twohot_bins", "optimizer",
)

#: The value each field added with ``version: v3-2024`` had in every earlier checkpoint (a
#: callable: computed from that checkpoint's architecture); a checkpoint written before them
#: is read as having these, so V1-V3 checkpoints still match their agents.
ARCHITECTURE_BEFORE_2024 = {
    "norm": "layer", "deter_blocks": 0, "prior_layers": 1,
    "head_layers": lambda arch: arch.get("num_layers"), "twohot_bins": "symlog", "optimizer": "adam",
}


def _with_earlier_fields(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """``state`` with the architecture fields it predates filled in (a shallow copy)."""
    arch = state.get("architecture") if isinstance(state, Mapping) else None
    if not isinstance(arch, Mapping) or all(k in arch for k in ARCHITECTURE_BEFORE_2024):
        return state
    arch = dict(arch)
    for key, value in ARCHITECTURE_BEFORE_2024.items():
        if key not in arch:
            arch[key] = value(arch) if callable(value) else value
    return {**state, "architecture": arch}

_REQUIRED = ("world_model", "behavior", "optimizers", "counters")


def load_checkpoint_file(path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with errors that name the file and the problem."""
    return load_file(path, CHECKPOINT_FORMAT, "Dreamer")


class CheckpointMixin:
    """``state_dict`` / ``load_state_dict`` / ``save`` / ``restore_checkpoint`` for :class:`Dreamer`."""

    def _architecture(self) -> dict[str, Any]:
        arch = {name: getattr(self.args, name) for name in ARCHITECTURE_FIELDS}
        arch["obs_shapes"] = {k: list(v) for k, v in self.obs_shapes.items()}
        arch["action_size"] = self.action_size
        arch["discrete"] = self.discrete
        return arch

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers, return normaliser and counters (CPU tensors, plain types)."""
        return make_state(
            CHECKPOINT_FORMAT, self._architecture(),
            config=self.args.to_dict(),
            world_model=cpu_state(self.world_model.state_dict()),
            behavior=cpu_state(self.behavior.state_dict()),
            optimizers={
                "model": self.model_optimizer.state_dict(),
                "actor": self.actor_optimizer.state_dict(),
                "value": self.value_optimizer.state_dict(),
            },
            counters={"updates": self.updates, "env_steps": self.env_steps,
                      "nonfinite_updates": self.nonfinite_updates},
        )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; mismatched architectures raise ``ValueError``."""
        state = _with_earlier_fields(state)
        check_state(state, CHECKPOINT_FORMAT, self._architecture(), "Dreamer", _REQUIRED)
        try:
            self.world_model.load_state_dict(state["world_model"])
            self.behavior.load_state_dict(state["behavior"])
            self.model_optimizer.load_state_dict(state["optimizers"]["model"])
            self.actor_optimizer.load_state_dict(state["optimizers"]["actor"])
            self.value_optimizer.load_state_dict(state["optimizers"]["value"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(f"Dreamer checkpoint tensors do not fit this agent: {exc}") from exc
        counters = state["counters"]
        self.updates = int(counters["updates"])
        self.env_steps = int(counters["env_steps"])
        self.nonfinite_updates = int(counters["nonfinite_updates"])

    def save(self, save_path) -> str:
        """Write :meth:`state_dict` to ``save_path`` atomically; returns the path."""
        return save_file(self.state_dict(), save_path)

    def restore_checkpoint(self, ckpt_path) -> None:
        """Load a file written by :meth:`save` (or a runtime ``learner.pt``; ``weights_only=True``)."""
        restore_file(ckpt_path, CHECKPOINT_FORMAT, "Dreamer", self.load_state_dict)
