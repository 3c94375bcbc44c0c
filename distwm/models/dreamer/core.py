"""Dreamer's protocol class: the learner and policy of :mod:`distwm.agent`.

:class:`DreamerCore` (the seed's name: :data:`Dreamer`) owns the world model, the actor-critic
and their optimisers. The Ray runtime drives it through ``from_config`` / ``act`` /
``update({"sequences": batch})`` / ``get_weights`` / ``state_dict``;
:class:`distwm.models.dreamer.DreamerAgent` drives the same object in one process.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from distwm.agent import DEFAULT_SAMPLE, DataSpec, NonFiniteLossError, SampleSpec
from distwm.blocks import deferred_grads
from distwm.configs.dreamer_config import DreamerConfig
from distwm.models.dreamer import acceleration
from distwm.models.dreamer.behavior import ActorCritic, Imagination
from distwm.models.dreamer.checkpoint import CheckpointMixin
from distwm.models.dreamer.interaction import InteractionMixin
from distwm.models.dreamer.joint_update import build_optimizers, clip_norm, joint_update
from distwm.models.dreamer.nonfinite import NonFiniteGuardMixin
from distwm.models.dreamer.replay_context import CONTEXT_KEYS, ReplayContextMixin, context_entries
from distwm.models.dreamer.replay_value import replayed_value_loss
from distwm.models.dreamer.spaces import resolve_device, spaces_to_shapes
from distwm.models.dreamer.world_model import WorldModel, preprocess_obs
from distwm.utils import distributed

__all__ = ["Dreamer", "DreamerCore", "NonFiniteLossError", "spaces_to_shapes"]


class DreamerCore(CheckpointMixin, InteractionMixin, ReplayContextMixin, NonFiniteGuardMixin):
    """Dreamer V1/V2/V3: world model + imagination actor-critic (see :class:`DreamerConfig`).

    Args:
        args: a :class:`DreamerConfig` (resolved here).
        obs_shape: ``(C, H, W)``, ``(D,)`` or ``{"image": ..., "state": ...}``.
        action_size: action vector width (number of actions for discrete ones).
        device: torch device (``"auto"``: CUDA when available).
        restore: the seed's parameter; constructors load no files, so ``True`` raises a
            ``ValueError``: build the agent, then call :meth:`restore_checkpoint`.
        discrete: one-hot discrete actions (categorical actor).
    """

    def __init__(self, args: DreamerConfig, obs_shape, action_size: int, device="cpu",
                 restore: bool = False, discrete: bool = False):
        if not isinstance(args, DreamerConfig):
            raise ValueError(f"Dreamer needs a DreamerConfig, got {type(args).__name__}")
        if restore:
            raise ValueError(
                "Dreamer(restore=True): constructors load no files. Build the agent, then call "
                f"agent.restore_checkpoint(path) (e.g. path=args.checkpoint_path={args.checkpoint_path!r})"
            )
        self.args = args.resolved()
        cfg = self.args
        if isinstance(obs_shape, Mapping):
            self.obs_shapes = {k: tuple(int(s) for s in v) for k, v in obs_shape.items()}
        else:
            shape = tuple(int(s) for s in obs_shape)
            self.obs_shapes = {"image" if len(shape) == 3 else "state": shape}
        self.action_size = int(action_size)
        self.discrete = bool(discrete)
        self.device = resolve_device(device)
        self.world_model = WorldModel(cfg, self.obs_shapes, self.action_size).to(self.device)
        self.behavior = ActorCritic(cfg, self.action_size, self.discrete,
                                    self.world_model.rssm.stoch_dim).to(self.device)
        self.model_optimizer, self.actor_optimizer, self.value_optimizer = build_optimizers(
            cfg, self.world_model, self.behavior)
        self.updates = 0
        self.env_steps = 0
        self.nonfinite_updates = 0
        self._nonfinite_streak = 0
        self.replay = None

    @classmethod
    def from_config(cls, config, observation_space, action_space, device="cpu") -> "DreamerCore":
        """Build from a :class:`DreamerConfig` (or dict) and the env adapter's spaces."""
        if isinstance(config, Mapping):
            config = DreamerConfig.from_dict(config)
        shapes, action_size, discrete = spaces_to_shapes(observation_space, action_space)
        return cls(config, shapes, action_size, device, discrete=discrete)

    # -- the agent protocol: data --------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        cfg = self.args
        context = int(cfg.replay_context)
        sample = SampleSpec(DEFAULT_SAMPLE, cfg.batch_size, context + cfg.train_seq_len,
                            online=bool(cfg.replay_online), stepids=context > 0)
        entries = context_entries(self.world_model.rssm) if context else {}
        # the train ratio counts trained steps (as dreamerv3 does): context steps are extra
        ratio = float(cfg.train_ratio) * (context + cfg.train_seq_len) / cfg.train_seq_len
        return DataSpec(train_ratio=ratio, samples=[sample], entries=entries)

    @property
    def modules(self) -> dict[str, nn.Module]:
        return {"world_model": self.world_model, "behavior": self.behavior}

    # -- acting --------------------------------------------------------------------------------
    def initial_state(self, num_envs: int) -> dict[str, Tensor]:
        """Recurrent state of ``num_envs`` fresh envs: the latent and the previous action."""
        with torch.no_grad():
            latent = self.world_model.rssm.init_state(num_envs, self.device)
        latent["action"] = torch.zeros(num_envs, self.action_size, device=self.device)
        return latent

    def _to_tensors(self, data: Mapping[str, Any], keys) -> dict[str, Tensor]:
        return {k: torch.as_tensor(np.asarray(data[k]), device=self.device) for k in keys}

    @torch.no_grad()
    def act(self, obs: Mapping[str, Any], state: Mapping[str, Tensor] | None, explore: bool):
        """``(actions (N, A) float32 numpy, new_state)`` for a batch of observations.

        ``obs`` holds ``image``/``state`` arrays with a leading env axis and ``is_first``
        ``(N,)``; the recurrent state of envs where ``is_first`` is set starts afresh.
        """
        missing = [k for k in self.obs_shapes if k not in obs]
        if missing:
            raise ValueError(f"act() needs observation keys {missing}; got {sorted(obs)}")
        tensors = preprocess_obs(self._to_tensors(obs, self.obs_shapes))
        num = next(iter(tensors.values())).shape[0]
        first = obs.get("is_first")
        first = (torch.zeros(num, device=self.device) if first is None
                 else torch.as_tensor(np.asarray(first), device=self.device).float().reshape(num))
        fresh = self.initial_state(num)
        if state is None:
            state = fresh
        state = self.world_model.rssm.mask_state(dict(state), 1.0 - first, fresh)
        rssm = self.world_model.rssm
        embed = self.world_model.encoder(tensors)
        latent = {k: v for k, v in state.items() if k != "action"}
        post = rssm.get_posterior(latent, state["action"], embed)
        feat = rssm.get_feat(post)
        actor = self.behavior.actor
        action = actor(feat, deter=not explore)
        if explore and self.args.action_noise > 0:
            action = actor.add_exploration(action, self.args.action_noise)
        if not self.discrete:
            action = action.clamp(-1.0, 1.0)
        post["action"] = action
        return action.float().cpu().numpy(), post

    def act_with_world_model(self, obs, prev_state, prev_action, explore: bool = False):
        """The seed's single step: ``(action (N, A) tensor, posterior state)``."""
        state = None if prev_state is None else {**prev_state, "action": torch.as_tensor(prev_action)}
        action, post = self.act(obs, state, explore)
        post = dict(post)
        post.pop("action")
        return torch.as_tensor(action), post

    # -- weights -------------------------------------------------------------------------------
    def get_weights(self) -> dict[str, Tensor]:
        """CPU copies of everything acting needs (encoder, RSSM, actor), keyed by module path."""
        weights = {}
        for prefix, module in (("world_model.encoder", self.world_model.encoder),
                               ("world_model.rssm", self.world_model.rssm),
                               ("behavior.actor", self.behavior.actor)):
            for key, value in module.state_dict().items():
                weights[f"{prefix}.{key}"] = value.detach().to("cpu", copy=True)
        return weights

    def set_weights(self, weights: Mapping[str, Tensor]) -> None:
        """Load weights from :meth:`get_weights` (of an agent with the same architecture)."""
        mine = {"world_model.encoder": self.world_model.encoder, "world_model.rssm": self.world_model.rssm,
                "behavior.actor": self.behavior.actor}
        for prefix, module in mine.items():
            sub = {k[len(prefix) + 1:]: v for k, v in weights.items() if k.startswith(prefix + ".")}
            try:
                module.load_state_dict(sub, strict=True)
            except RuntimeError as exc:
                raise ValueError(f"set_weights: weights do not fit {prefix}: {exc}") from exc

    # -- learning ------------------------------------------------------------------------------
    def _batch_to_tensors(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        needed = (*self.obs_shapes, "action", "reward", "is_first", "is_terminal")
        context = [k for k in CONTEXT_KEYS if k in batch]
        if self.args.replay_context and context:  # without them: no stored latents
            needed = (*needed, *CONTEXT_KEYS)
        missing = [k for k in needed if k not in batch]
        if missing:
            hint = (" (replay context: the entries of data_spec().entries come together)"
                    if set(missing) & set(CONTEXT_KEYS) else "")
            raise ValueError(f"update() batch lacks keys {missing}; it has {sorted(batch)}{hint}")
        data = self._to_tensors(batch, (*needed, "is_last") if "is_last" in batch else needed)
        shape = tuple(data["reward"].shape)
        if len(shape) != 2:
            raise ValueError(f"update() batch 'reward' must be (B, T), got shape {shape}")
        for key, value in data.items():
            if tuple(value.shape[:2]) != shape:
                raise ValueError(f"update() batch {key!r} has shape {tuple(value.shape)}, expected (B, T)={shape}")
        if data["action"].shape[-1] != self.action_size:
            raise ValueError(
                f"update() batch 'action' has width {data['action'].shape[-1]}, this agent "
                f"acts with {self.action_size}"
            )
        data = preprocess_obs(data)
        data["is_first"] = data["is_first"].bool()
        data["is_terminal"] = data["is_terminal"].bool()
        if "is_last" in data:
            data["is_last"] = data["is_last"].bool()
        return data

    def model_loss(self, data: Mapping[str, Tensor]):
        """``(loss, posterior, metrics)`` of a preprocessed batch-major batch (see
        :meth:`update`); :meth:`world_model_loss` is the seed's form of it."""
        loss, post, metrics = self.world_model.loss(data)
        self._remember_posterior(post)
        return loss, post, metrics

    def world_model_loss(self, obs, acs, rews, nonterms):
        """The seed's ``world_model_loss(obs, acs, rews, nonterms)``: ``(loss, posterior,
        metrics)`` of time-major arrays as ``ReplayBuffer.sample()`` returns them (``obs``
        ``(T, B, C, H, W)`` uint8 or already preprocessed floats, or ``(T, B, D)`` states;
        ``acs`` ``(T, B, A)``, ``acs[t]`` the action that led to ``obs[t]``; ``rews`` ``(T, B)``
        received on arriving at ``obs[t]``; ``nonterms`` ``(T, B)``, 0 where the episode
        terminated at ``obs[t]``). A step after a terminal starts a new episode."""
        def batch_major(x):
            return torch.as_tensor(x).detach().cpu().transpose(0, 1)

        key = "image" if np.ndim(obs) == 5 else "state"
        terminal = 1.0 - batch_major(nonterms).float()
        is_first = torch.zeros_like(terminal, dtype=torch.bool)
        is_first[:, 0] = True
        is_first[:, 1:] = terminal[:, :-1] > 0.5
        batch = {key: batch_major(obs), "action": batch_major(acs), "reward": batch_major(rews),
                 "is_first": is_first, "is_terminal": terminal > 0.5}
        if key == "image" and batch[key].is_floating_point():  # preprocessed, as the seed's
            batch[key] = ((batch[key] + 0.5) * 255.0).round().clamp(0, 255).to(torch.uint8)
        return self.model_loss(self._batch_to_tensors(batch))

    def imagine(self, posterior: Mapping[str, Tensor], is_terminal: Tensor) -> Imagination:
        """Imagined rollouts from every posterior state of the batch (nothing is kept here:
        pass the result to :meth:`actor_loss` and :meth:`value_loss`)."""
        start = {k: v.detach().reshape(-1, *v.shape[2:]) for k, v in posterior.items()}
        start_cont = 1.0 - is_terminal.float().reshape(-1)
        return self.behavior.imagine(self.world_model, start, start_cont)

    def actor_loss(self, imag: Imagination | None = None):
        """``(loss, metrics)`` of the actor on ``imag`` (what :meth:`imagine` returned)."""
        return self.behavior.actor_loss(_imagination_arg(imag, "actor_loss"))

    def value_loss(self, imag: Imagination | None = None):
        """``(loss, metrics)`` of the critic on ``imag`` (what :meth:`imagine` returned)."""
        return self.behavior.value_loss(_imagination_arg(imag, "value_loss"))

    def _step(self, loss: Tensor, optimizer, params, clip: float) -> Tensor:
        """Backward, average the gradients over the learner group (no-op without one),
        clip; returns the norm of the (averaged) gradient."""
        params = list(params)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.reduce_gradients(params)
        return clip_norm(params, clip)

    def _behavior_sync(self) -> tuple[list[nn.Parameter], list[Tensor]]:
        """The actor-critic step's sync point: ``(parameters, extra)``, the return
        normaliser's EMA averaged in the same all-reduce (see :mod:`distwm.utils.distributed`)."""
        params = [*self.behavior.actor.parameters(), *self.behavior.critic.parameters()]
        norm = self.behavior.return_norm
        return params, ([norm.low, norm.high] if self.args.return_norm else [])

    def update(self, batches: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        """One gradient step of world model, actor and critic on ``{"sequences": batch}``
        (the one sample of :meth:`data_spec`), ``batch`` a ``(B, T, ...)`` numpy batch.

        Keys: ``image`` and/or ``state``, ``action`` (the action that led to each
        observation), ``reward``, ``is_first``, ``is_terminal`` (``is_last`` is not needed:
        truncated episodes bootstrap). A non-finite loss or gradient skips the update and is
        counted; ``max_nonfinite_updates`` in a row raise :class:`NonFiniteLossError`.

        Data-parallel (a :mod:`distwm.utils.distributed` group of learners): both steps average
        their gradients over the group before clipping, the return normaliser's EMA is averaged
        with the actor-critic gradients, and a rank that skips before a sync point joins it
        with NaN gradients, so every rank skips the same steps (the world-model step and the
        actor-critic step separately, as without a group).
        """
        cfg = self.args
        batch = _the_sample(batches)
        data = self._batch_to_tensors(batch)
        if cfg.replay_context:
            data = self._apply_replay_context(data, batch)
        if cfg.update_mode == "joint":  # one backward, one step (the current dreamerv3 code)
            return joint_update(self, data)
        model_sync = (list(self.world_model.parameters()), [])
        bad = [k for k, v in data.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            return self._skip_nonfinite(f"input ({', '.join(bad)} in the batch)", {}, join=model_sync)
        self.world_model.train()
        with acceleration.restore_threads():  # the observe loop's backward runs on its own
            with deferred_grads.deferring(cfg.defer_weight_grads):
                model_loss, post, metrics = self.model_loss(data)
            if not torch.isfinite(model_loss):
                return self._skip_nonfinite("world-model loss", metrics, join=model_sync)
            model_norm = self._step(model_loss, self.model_optimizer, model_sync[0], cfg.grad_clip_norm)
        if not torch.isfinite(model_norm):
            return self._skip_nonfinite("world-model gradient", metrics)
        self.model_optimizer.step()

        # with a learner group, a skipped actor-critic step leaves the return normaliser as
        # it was on every rank (each rank updated it from its own returns, or not at all)
        behavior_sync = self._behavior_sync()
        saved = ([b.clone() for b in self._return_norm_buffers()]
                 if distributed.world_size() > 1 and cfg.return_norm else None)
        imag = self.imagine(post, data["is_terminal"])
        if not (torch.isfinite(imag.returns).all() and torch.isfinite(imag.value).all()):
            return self._skip_nonfinite("imagined return", metrics, join=behavior_sync, restore=saved)
        actor_loss, actor_metrics = self.actor_loss(imag)
        value_loss, value_metrics = self.value_loss(imag)
        if cfg.repval_loss_scale > 0:  # the world model has stepped: the critic alone learns
            repval, repval_metrics = replayed_value_loss(self.behavior, self.world_model, post, data,
                                                         imag.returns, grad=False)
            value_loss = value_loss + cfg.repval_loss_scale * repval
            value_metrics.update(repval_metrics)
        metrics.update(actor_metrics)
        metrics.update(value_metrics)
        if not (torch.isfinite(actor_loss) and torch.isfinite(value_loss)):
            return self._skip_nonfinite("actor/critic loss", metrics, join=behavior_sync, restore=saved)
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.value_optimizer.zero_grad(set_to_none=True)
        (actor_loss + value_loss).backward()
        distributed.reduce_gradients(behavior_sync[0], extra=behavior_sync[1])
        actor_norm = clip_norm(self.behavior.actor.parameters(), cfg.ac_grad_clip_norm)
        value_norm = clip_norm(self.behavior.critic.parameters(), cfg.ac_grad_clip_norm)
        if not (torch.isfinite(actor_norm) and torch.isfinite(value_norm)):
            return self._skip_nonfinite("actor/critic gradient", metrics, restore=saved)
        self.actor_optimizer.step()
        self.value_optimizer.step()
        self.updates += 1
        self._nonfinite_streak = 0
        self.behavior.update_slow_critic(self.updates)
        metrics.update(model_grad_norm=model_norm, actor_grad_norm=actor_norm,
                       value_grad_norm=value_norm)
        out = {k: float(v) for k, v in metrics.items()}
        out.update(skipped=0.0, nonfinite_updates=float(self.nonfinite_updates), updates=float(self.updates))
        return out

    def report(self, batch: Mapping[str, Any], context: int = 5) -> dict[str, Any]:
        """Open-loop predictions beside the real frames (the run report's and TensorBoard's
        ``openloop`` image and video; see :mod:`distwm.models.dreamer.report`)."""
        from distwm.models.dreamer.report import open_loop_report

        return open_loop_report(self, batch, context)

    def train_one_batch(self) -> dict[str, float]:
        """One :meth:`update` on a batch sampled from the attached replay (``self.replay``)."""
        if self.replay is None:
            raise ValueError("train_one_batch() needs a replay buffer: set dreamer.replay first")
        from distwm.loop.adapters import StepReplay

        replay = StepReplay(self.replay)  # the loop's sampling and write-back of entries
        metrics = self.update({DEFAULT_SAMPLE: replay.sample(self.data_spec().sample(DEFAULT_SAMPLE))})
        updates = self.replay_updates()
        if updates:
            replay.write_back(updates)
        return metrics


#: the seed's name of Dreamer's protocol class
Dreamer = DreamerCore


def _the_sample(batches: Any) -> Mapping[str, Any]:
    """The ``"sequences"`` batch of ``update``'s ``{sample name: batch}``."""
    if isinstance(batches, Mapping) and set(batches) == {DEFAULT_SAMPLE}:
        return batches[DEFAULT_SAMPLE]
    got = sorted(map(str, batches)) if isinstance(batches, Mapping) else type(batches).__name__
    hint = ""
    if isinstance(batches, Mapping) and "reward" in batches:
        hint = f": that is one batch; pass update({{{DEFAULT_SAMPLE!r}: batch}})"
    raise ValueError(f"Dreamer.update() takes {{sample name: batch}} with the samples of "
                     f"data_spec(): {DEFAULT_SAMPLE!r}; got {got}{hint}")


def _imagination_arg(imag: Imagination | None, method: str) -> Imagination:
    if imag is None:
        raise ValueError(
            f"Dreamer.{method}() needs the imagination to score: pass what "
            f"imagine(posterior, is_terminal) returned, e.g. {method}(agent.imagine(post, is_terminal))"
        )
    return imag

