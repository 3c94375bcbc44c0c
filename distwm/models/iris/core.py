"""IRISCore: IRIS as a :class:`distwm.agent.Agent`, what the Ray runtime and
:class:`~distwm.training.train_iris.IRISTrainer` both drive.

Its :meth:`~IRISCore.data_spec` names three samples, as IRIS trains its three parts on three
batch shapes: ``tokenizer`` (single frames), ``world_model`` (``seq_len + 1`` steps: ``seq_len``
IRIS steps, each a frame, its action and what followed) and ``actor_critic`` (``burn_in + 1``
frames: the burn-in and the start of imagination). Every update carries all three; the
schedule (IRIS's start after 5 / 25 / 50 epochs) is the agent's update counter
(:meth:`~distwm.configs.iris_config.IRISConfig.start_update`): a part trains from its start
on, and the batches of parts not started yet are not used.

Acting (CPU, in env workers): reconstruct each frame with the tokenizer, step the LSTM
(reset where ``is_first``), sample at ``temperature`` with ``epsilon`` random actions when
exploring, at ``eval_temperature`` otherwise (IRIS's test collector samples at 0.5).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import torch

from distwm.agent import DataSpec, NonFiniteLossError, SampleSpec
from distwm.models.iris.agent import IRISAgent
from distwm.models.iris.batches import actor_critic_batch, iris_steps
from distwm.utils.checkpoint import check_state, checkpoint_format, cpu_state, make_state

__all__ = ["IRISCore", "COMPONENTS"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = checkpoint_format("iris", 1)
ARCHITECTURE_FIELDS = ("vocab_size", "embed_dim", "tokens_per_frame", "encoder_channels", "residual_blocks", "image_size",
                       "transformer_embed_dim", "transformer_layers", "transformer_heads", "seq_len", "lstm_size")
#: the three parts, in IRIS's start order, with their sample names
COMPONENTS = ("tokenizer", "world_model", "actor_critic")
#: what acting needs (the transformer stays on the learner)
_ACTING = ("tokenizer", "actor_critic")


def _discrete_actions(action_space) -> int:
    from distwm.envs.wrappers import OneHotBox

    if isinstance(action_space, OneHotBox):
        return int(action_space.shape[0])
    n = getattr(action_space, "n", None)
    if n is not None:
        return int(n)
    raise ValueError(f"IRIS acts in discrete action spaces (one-hot vectors); got {action_space}. "
                     "Use a game with discrete actions (Atari, MinAtar, Crafter, CartPole from pixels)")


class IRISCore:
    """IRIS agent (module docstring): an :class:`IRISAgent` and the update counter."""

    def __init__(self, config, obs_shape, action_size: int, device: Any = "cpu"):
        if tuple(obs_shape) != config.get_frame_shape():
            raise ValueError(f"IRIS observes {config.get_frame_shape()} RGB frames (image_size "
                             f"{config.image_size}), got observations of shape {tuple(obs_shape)}")
        self.config = config
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                                   else "cpu" if device == "auto" else device)
        self.agent = IRISAgent(config, action_size, self.device)
        self.updates = 0
        self.nonfinite_updates = 0
        self._nonfinite_streak = 0

    @classmethod
    def from_config(cls, config, observation_space, action_space, device: Any = "cpu") -> "IRISCore":
        spaces = getattr(observation_space, "spaces", {})
        if "image" not in spaces:
            raise ValueError(f"IRIS learns from pixels: the observation space needs an 'image' "
                             f"(uint8 C, H, W), got keys {sorted(spaces)} (set obs_type: pixels)")
        return cls(config, tuple(spaces["image"].shape), _discrete_actions(action_space), device)

    @classmethod
    def supports(cls, observation_space, action_space) -> bool:
        """Whether :meth:`from_config` takes these spaces (pixels and discrete actions)."""
        try:
            _discrete_actions(action_space)
        except ValueError:
            return False
        return "image" in getattr(observation_space, "spaces", {})

    @classmethod
    def tiny_test_config(cls, config):
        """A config small enough for the protocol suite (every part trains from update 0)."""
        return config.replace(vocab_size=16, embed_dim=8, tokens_per_frame=4, encoder_channels=32, residual_blocks=1,
                              transformer_embed_dim=16, transformer_layers=1, transformer_heads=2,
                              seq_len=3, lstm_size=16, burn_in=2, imagine_horizon=3, tokenizer_batch_size=4,
                              world_model_batch_size=2, actor_critic_batch_size=2,
                              world_model_start_epochs=config.tokenizer_start_epochs,
                              actor_critic_start_epochs=config.tokenizer_start_epochs, max_nonfinite_updates=3)

    # -- data ---------------------------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        cfg = self.config
        # world_model first: the runtime's report(batch) gets the first sample's batch
        samples = (SampleSpec("world_model", cfg.world_model_batch_size, cfg.seq_len + 1),
                   SampleSpec("tokenizer", cfg.tokenizer_batch_size, 1),
                   SampleSpec("actor_critic", cfg.actor_critic_batch_size, cfg.burn_in + 1))
        steps = sum(s.steps for s in samples)
        return DataSpec(train_ratio=steps * cfg.updates_per_env_step, samples=samples)

    def started(self, component: str) -> bool:
        return self.updates >= self.config.start_update(component)

    # -- acting -------------------------------------------------------------------------------
    def initial_state(self, num_envs: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.agent.actor_critic.initial_state(int(num_envs), self.device)

    @torch.no_grad()
    def act(self, obs: Mapping[str, Any], state: Any, explore: bool) -> tuple[np.ndarray, Any]:
        if "image" not in obs:
            raise ValueError(f"IRISCore.act: observation has no 'image' (keys: {sorted(obs)})")
        frames = self.agent.reconstruct(np.asarray(obs["image"]))
        n = frames.shape[0]
        h, c = self.initial_state(n) if state is None else state
        is_first = obs.get("is_first")
        if is_first is not None:
            keep = 1.0 - torch.as_tensor(np.asarray(is_first), dtype=torch.float32, device=self.device)
            h, c = h * keep.unsqueeze(-1), c * keep.unsqueeze(-1)
        self.agent.actor_critic.eval()
        logits, _, state = self.agent.actor_critic.step(frames, (h, c))
        cfg = self.config
        actions = (self.agent.choose(logits, cfg.epsilon, cfg.temperature) if explore
                   else self.agent.choose(logits, 0.0, cfg.eval_temperature))
        one_hot = np.zeros((n, self.agent.action_size), np.float32)
        one_hot[np.arange(n), actions.cpu().numpy()] = 1.0
        return one_hot, state

    def get_weights(self) -> dict[str, torch.Tensor]:
        return {f"{part}.{k}": v.detach().cpu().clone() for part in _ACTING
                for k, v in getattr(self.agent, part).state_dict().items()}

    def set_weights(self, weights: Mapping[str, Any]) -> None:
        for part in _ACTING:
            prefix = f"{part}."
            getattr(self.agent, part).load_state_dict({k[len(prefix):]: v for k, v in weights.items()
                                                       if k.startswith(prefix)})

    # -- learning -----------------------------------------------------------------------------
    def update(self, batches: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        """One step of each started part on its sample (module docstring). Returns every part's
        losses (``tokenizer/loss``, ...), ``skipped`` (1.0 when a non-finite input, loss or
        gradient skipped a part's step), ``updates`` and which parts trained."""
        missing = [name for name in COMPONENTS if self.started(name) and name not in batches]
        if missing:
            raise ValueError(f"IRISCore.update needs the samples {list(COMPONENTS)} (its data_spec's); "
                             f"got {sorted(batches)}, missing {missing}")
        metrics: dict[str, float] = {}
        bad = [name for name in COMPONENTS if self.started(name) and not _finite(batches[name])]
        if bad:
            return self._skip(f"non-finite input in the {', '.join(bad)} batch", metrics)
        if self.started("tokenizer"):
            frames = np.asarray(batches["tokenizer"]["image"])
            metrics.update(self.agent.update_autoencoder(frames.reshape(-1, *frames.shape[2:])))
        if self.started("world_model"):
            steps = iris_steps(batches["world_model"], self.device)
            metrics.update(self.agent.update_transformer(steps["frames"], steps["actions"], steps["rewards"],
                                                         steps["ends"], steps["valid"]))
        if self.started("actor_critic"):
            start = actor_critic_batch(batches["actor_critic"], self.device)
            rollout = self.agent.imagine_rollout(start["start"], self.config.imagine_horizon,
                                                 burn_in_frames=start["burn_in"],
                                                 burn_in_first=start["burn_in_first"],
                                                 start_first=start["start_first"])
            metrics.update(self.agent.update_actor_critic(rollout))
        skipped = [k.split("/")[0] for k, v in metrics.items() if k.endswith("/skipped") and v]
        if skipped:
            return self._skip(f"non-finite loss or gradient in {', '.join(skipped)}", metrics)
        self._nonfinite_streak = 0
        self.updates += 1
        return self._finish(metrics, skipped=0.0)

    def _finish(self, metrics: dict[str, float], skipped: float) -> dict[str, float]:
        metrics.update(skipped=skipped, updates=float(self.updates), nonfinite_updates=float(self.nonfinite_updates))
        for name in COMPONENTS:
            metrics[f"{name}/training"] = float(self.started(name))
        return {k: v for k, v in metrics.items() if np.isfinite(v)}

    def _skip(self, what: str, metrics: dict[str, float]) -> dict[str, float]:
        self.nonfinite_updates += 1
        self._nonfinite_streak += 1
        log.warning("IRIS update %d skipped: %s (%d skipped in all)", self.updates, what, self.nonfinite_updates)
        if self._nonfinite_streak >= self.config.max_nonfinite_updates:
            raise NonFiniteLossError(f"IRIS: {self._nonfinite_streak} consecutive updates skipped ({what}; limit "
                                     f"max_nonfinite_updates={self.config.max_nonfinite_updates})")
        return self._finish(metrics, skipped=1.0)

    def report(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Real frames beside their reconstructions and an imagined rollout (:mod:`.report`)."""
        from distwm.models.iris.report import iris_report

        return iris_report(self, batch)

    # -- checkpoints --------------------------------------------------------------------------
    def _architecture(self) -> dict[str, Any]:
        arch = {name: getattr(self.config, name) for name in ARCHITECTURE_FIELDS}
        arch["action_size"] = self.agent.action_size
        return arch

    def state_dict(self) -> dict[str, Any]:
        return make_state(CHECKPOINT_FORMAT, self._architecture(), config=self.config.to_dict(),
                          networks=cpu_state(self.agent.state_dict()), optimizers=self.agent.optimizer_states(),
                          updates=self.updates, nonfinite_updates=self.nonfinite_updates)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, CHECKPOINT_FORMAT, self._architecture(), "IRIS", ("networks", "optimizers", "updates"))
        try:
            self.agent.load_state_dict(state["networks"])
            self.agent.load_optimizer_states(state["optimizers"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(f"IRIS checkpoint tensors do not fit this agent: {exc}") from exc
        self.updates = int(state["updates"])
        self.nonfinite_updates = int(state.get("nonfinite_updates", 0))


def _finite(batch: Mapping[str, Any]) -> bool:
    return all(bool(np.isfinite(np.asarray(batch[k])).all()) for k in ("reward", "action") if k in batch)
