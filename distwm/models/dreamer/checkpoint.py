"""Dreamer checkpoints: networks, optimisers and counters in one ``torch.save`` file that
loads with ``weights_only=True``; corrupt or mismatched files raise errors that say why."""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch

__all__ = ["CheckpointMixin", "CHECKPOINT_FORMAT", "ARCHITECTURE_FIELDS", "load_checkpoint_file"]

CHECKPOINT_FORMAT = "distwm.dreamer/1"

#: Config fields that decide the shapes of the networks; a checkpoint must agree on them.
ARCHITECTURE_FIELDS = (
    "latent", "deter_size", "stoch_size", "stoch_classes", "num_units", "num_layers",
    "cnn_depth", "obs_embed_size", "activation", "layer_norm", "reward_head", "critic_head",
    "num_buckets", "use_disc_model", "learned_initial_state", "actor_dist",
)


def load_checkpoint_file(path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with errors that name the file and the problem."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Dreamer checkpoint {path!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and EOF errors all mean the same thing here
        raise ValueError(
            f"Dreamer checkpoint {path!r} is corrupt or not a torch checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(state, Mapping) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(
            f"{path!r} is not a Dreamer checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r})"
        )
    return dict(state)


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
        cpu = lambda sd: {k: v.detach().cpu() for k, v in sd.items()}  # noqa: E731
        return {
            "format": CHECKPOINT_FORMAT,
            "architecture": self._architecture(),
            "config": self.args.to_dict(),
            "world_model": cpu(self.world_model.state_dict()),
            "behavior": cpu(self.behavior.state_dict()),
            "optimizers": {
                "model": self.model_optimizer.state_dict(),
                "actor": self.actor_optimizer.state_dict(),
                "value": self.value_optimizer.state_dict(),
            },
            "counters": {"updates": self.updates, "env_steps": self.env_steps,
                         "nonfinite_updates": self.nonfinite_updates},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; mismatched architectures raise ``ValueError``."""
        if not isinstance(state, Mapping) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a Dreamer state dict (expected format {CHECKPOINT_FORMAT!r})")
        missing = [k for k in ("architecture", "world_model", "behavior", "optimizers", "counters")
                   if k not in state]
        if missing:
            raise ValueError(f"Dreamer state dict is incomplete: missing {missing}")
        mine, theirs = self._architecture(), dict(state["architecture"])
        diff = [f"{k}: checkpoint {theirs.get(k)!r} vs agent {mine[k]!r}"
                for k in mine if theirs.get(k) != mine[k]]
        if diff:
            raise ValueError("Dreamer checkpoint does not match this agent's architecture: "
                             + "; ".join(diff))
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
        save_path = os.fspath(save_path)
        directory = os.path.dirname(os.path.abspath(save_path))
        os.makedirs(directory, exist_ok=True)
        tmp = save_path + ".tmp"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, save_path)
        return save_path

    def restore_checkpoint(self, ckpt_path) -> None:
        """Load a file written by :meth:`save` (``weights_only=True``)."""
        state = load_checkpoint_file(ckpt_path)
        try:
            self.load_state_dict(state)
        except ValueError as exc:
            raise ValueError(f"{os.fspath(ckpt_path)!r}: {exc}") from exc
