"""Dreamer V1, V2 and V3 as one configuration.

``DreamerConfig(version="v3")`` is DreamerV3 as published (the paper and its 2023 code);
``version="v3-2024"`` is the authors' current recipe (the dreamerv3 code of 2024: replayed-value
loss, block GRU with RMSNorm, symexp two-hot bins, LaProp with adaptive gradient clipping and
warmup, one joint update, REINFORCE for every action space, ...; the README's "DreamerV3
recipes" table lists every difference and its field); ``version="v1"`` and ``"v2"`` switch
the algorithmic defaults (latent type, heads, KL scheme, actor gradient, return scaling,
slow critic, optimiser settings) to those of the earlier papers. Every such field defaults to
``None``, meaning "the default of ``version``", so that an explicit value always wins and a
YAML file records only what the user chose. :meth:`DreamerConfig.resolved` returns the copy
with every ``None`` filled in; that is what the networks read.

Network widths come from ``model_size`` (the DreamerV3 presets XS, S, M, L, XL, the current
code's 1m ... 400m, and a ``tiny`` one for tests) unless given explicitly (``deter_size``,
``num_units``, ...). Versions 1 and 2 default to the sizes of their papers (``paper-v1``,
``paper-v2``); V3 to S and V3-2024 to 1m (the two codes' DMC proprio settings).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal, Optional

from distwm.configs.activations import check_activation
from distwm.configs.dreamer_presets import MODEL_SIZES, VERSION_DEFAULTS
from distwm.configs.rl_config import RLConfig

__all__ = [
    "DreamerConfig",
    "MODEL_SIZES",
    "VERSION_DEFAULTS",
    "dreamer_v1_config",
    "dreamer_v2_config",
    "dreamer_v3_config",
    "dreamer_v3_2024_config",
]

_SIZE_FIELDS = ("deter_size", "num_units", "num_layers", "cnn_depth", "stoch_size", "stoch_classes")


@dataclass
class DreamerConfig(RLConfig):
    """Configuration of a Dreamer (V1, V2 or V3) agent: env, networks, losses, training loop.

    Fields left at ``None`` take the default of ``version`` (see :data:`VERSION_DEFAULTS`) or,
    for network widths, of ``model_size`` (see :data:`MODEL_SIZES`).

    The evaluation cadence is :class:`RLConfig`'s ``eval_interval`` (env steps) and
    ``eval_episodes``; the seed's ``test_interval`` / ``test_episodes`` are accepted as their
    old names. ``buffer_memory_limit``: the fraction of the available physical memory (e.g.
    ``0.5``) that the single-process :class:`~distwm.models.dreamer.DreamerAgent` lets its
    replay take: a ``buffer_size`` that needs more is reduced to fit, with a warning naming
    both sizes. ``None`` (default): ``buffer_size`` is used as given.
    """

    ALIASES: ClassVar[dict[str, str]] = {"test_interval": "eval_interval",
                                         "test_episodes": "eval_episodes"}

    #: import path of the class implementing :class:`distwm.agent.Agent` for this config
    AGENT_CLASS: ClassVar[str] = "distwm.models.dreamer:DreamerCore"

    env: str = "walker-walk"
    version: Literal["v1", "v2", "v3", "v3-2024"] = "v3"
    model_size: Optional[Literal["tiny", "XS", "S", "M", "L", "XL", "paper-v1", "paper-v2", "1m",
                                 "12m", "25m", "50m", "100m", "200m", "400m"]] = None
    exp_name: str = "dreamer"

    # -- training loop ------------------------------------------------------------------------
    total_steps: int = 500_000
    num_envs: int = 1
    buffer_size: int = 1_000_000
    buffer_memory_limit: Optional[float] = None
    seed_steps: Optional[int] = None
    train_ratio: Optional[float] = None
    batch_size: Optional[int] = None
    train_seq_len: Optional[int] = None
    imagine_horizon: int = 15
    checkpoint_path: str = ""
    use_wandb: bool = False
    wandb_project: str = "distwm"
    max_nonfinite_updates: int = 10

    # -- networks -----------------------------------------------------------------------------
    latent: Optional[Literal["gaussian", "categorical"]] = None
    deter_size: Optional[int] = None
    stoch_size: Optional[int] = None
    stoch_classes: Optional[int] = None
    num_units: Optional[int] = None
    num_layers: Optional[int] = None
    cnn_depth: Optional[int] = None
    obs_embed_size: Optional[int] = None
    activation: Optional[str] = None
    layer_norm: Optional[bool] = None
    unimix: Optional[float] = None
    learned_initial_state: Optional[bool] = None
    symlog_obs: Optional[bool] = None
    #: the norm of every normalised layer (with ``layer_norm``): ``layer`` (LayerNorm, eps 1e-3,
    #: no biases before it; V2/V3) or ``rms`` (RMSNorm, eps 1e-4, biases kept; V3-2024)
    norm: Optional[Literal["layer", "rms"]] = None
    #: ``> 0``: the RSSM's deterministic step is the block-diagonal GRU with that many groups
    #: and its own input layers for h, z and a (V3-2024: 8); ``0``: the dense GRU
    deter_blocks: Optional[int] = None
    #: hidden layers of the RSSM's prior head (V3: 1, V3-2024: 2)
    prior_layers: Optional[int] = None
    #: hidden layers of the reward and continue heads (V3: ``num_layers``, V3-2024: 1)
    head_layers: Optional[int] = None
    reward_head: Optional[Literal["normal", "twohot"]] = None
    critic_head: Optional[Literal["normal", "twohot"]] = None
    num_buckets: int = 255
    symlog_range: float = 20.0
    #: two-hot bins: ``symlog`` (uniform in symlog space; V3) or ``symexp`` (the symexp of
    #: uniform points, targets and predictions in real space; V3-2024)
    twohot_bins: Optional[Literal["symlog", "symexp"]] = None
    use_disc_model: Optional[bool] = None
    disc_loss_coeff: Optional[float] = None
    #: how imagination reads the continue head: ``"prob"`` discounts by the predicted
    #: continuation probability (DreamerV2, current dreamerv3 code), ``"mode"`` by its 0/1
    #: threshold (DreamerV3 paper code)
    imagine_cont: Optional[Literal["prob", "mode"]] = None
    #: the continue head learns ``(1 - terminal) * discount`` and imagination discounts by its
    #: prediction alone (the start state's included), not by ``discount`` again (the current
    #: code's ``contdisc``; V3-2024)
    cont_discount: Optional[bool] = None
    #: training batches first take each stream's freshest sequences not trained on yet, the
    #: rest uniformly (the current code's online replay queue; V3-2024)
    replay_online: Optional[bool] = None
    #: training sequences are ``replay_context + train_seq_len`` long and start from the latent
    #: stored in replay at their first ``replay_context`` steps (written by acting and by every
    #: update, the current code's ``replay_context``; V3-2024: 1); 0: from the initial state
    replay_context: Optional[int] = None

    # -- world model loss ---------------------------------------------------------------------
    kl_loss_coeff: Optional[float] = None
    kl_alpha: Optional[float] = None
    kl_dyn_scale: Optional[float] = None
    kl_rep_scale: Optional[float] = None
    free_nats: Optional[float] = None
    free_nats_per_step: Optional[bool] = None

    # -- actor-critic -------------------------------------------------------------------------
    discount: Optional[float] = None
    td_lambda: float = 0.95
    actor_dist: Optional[Literal["tanh_normal", "normal"]] = None
    actor_grad: Optional[Literal["auto", "dynamics", "reinforce"]] = None
    actor_entropy: Optional[float] = None
    #: actions fed to the dynamics are scaled by ``1 / max(1, |a| / action_clip)`` (gradient of
    #: the scale stopped; DreamerV3's ``action_clip``; 0: off); only imagined continuous
    #: actions can exceed it
    action_clip: Optional[float] = None
    #: dynamics-backprop actors maximise ``(R - V(s)) / S`` with the gradient through ``V``
    #: (DreamerV3's 2023 code) instead of ``R / S`` (V1/V2)
    actor_baseline: Optional[bool] = None
    #: the actor's output layer starts scaled by this (V3: 1, V3-2024: 0.01)
    actor_outscale: Optional[float] = None
    #: uniform mix of the discrete actor (V3: ``unimix``; V3-2024: 0, its categorical policy)
    actor_unimix: Optional[float] = None
    action_noise: Optional[float] = None
    return_norm: Optional[bool] = None
    #: the percentile EMA starts at the first batch's percentiles (``first``) or at 0 with no
    #: debiasing (``zero``: the dreamerv3 code's; V3-2024)
    return_norm_init: Optional[Literal["first", "zero"]] = None
    return_norm_decay: float = 0.99
    return_norm_limit: float = 1.0
    return_norm_percentiles: tuple[float, float] = (5.0, 95.0)
    slow_critic_fraction: Optional[float] = None
    slow_critic_interval: Optional[int] = None
    slow_critic_reg: Optional[float] = None
    slow_critic_target: Optional[bool] = None
    #: scale of the replayed-value loss: the critic also regresses lambda returns computed on
    #: the replayed (posterior) sequence, bootstrapped with the imagined returns (V3-2024: 0.3;
    #: 0: off)
    repval_loss_scale: Optional[float] = None
    #: the replayed-value loss trains the world model's representation too (V3-2024); needs
    #: ``update_mode: joint`` (the sequential update has stepped the world model already)
    repval_grad: Optional[bool] = None

    # -- optimisation -------------------------------------------------------------------------
    #: ``sequential``: a world-model step, then an actor-critic step in the updated model
    #: (V1-V3); ``joint``: one backward of the summed losses, then every optimiser steps
    #: (V3-2024, its single optimiser)
    update_mode: Optional[Literal["sequential", "joint"]] = None
    #: ``adam`` or ``laprop`` (:class:`distwm.utils.optim.LaProp`: RMS scaling, then momentum;
    #: V3-2024)
    optimizer: Optional[Literal["adam", "laprop"]] = None
    #: adaptive gradient clipping of LaProp, per tensor ``|g| <= agc * max(1e-3, |p|)``
    #: (V3-2024: 0.3; 0: off)
    agc: Optional[float] = None
    #: linear learning-rate warmup from 0 over this many updates (V3-2024: 1000; 0: none)
    warmup_steps: Optional[int] = None
    model_learning_rate: Optional[float] = None
    actor_learning_rate: Optional[float] = None
    value_learning_rate: Optional[float] = None
    #: epsilon of the world-model optimiser (``eps`` of LaProp too)
    adam_epsilon: Optional[float] = None
    #: epsilon of the actor and critic optimisers (V1-V3: ``max(adam_epsilon, 1e-5)``)
    ac_epsilon: Optional[float] = None
    #: global gradient-norm clipping of the world model (0: none)
    grad_clip_norm: Optional[float] = None
    #: global gradient-norm clipping of the actor and of the critic (0: none)
    ac_grad_clip_norm: Optional[float] = None
    #: Linear/conv initialisation: ``trunc_normal`` (V3: variance 1/fan_avg, zero biases),
    #: ``trunc_normal_in`` (V3-2024: variance 1/fan_in), ``xavier_uniform`` (V1/V2's Keras
    #: default) or ``torch`` (PyTorch's defaults)
    weight_init: Optional[Literal["torch", "xavier_uniform", "trunc_normal", "trunc_normal_in"]] = None

    # -- speed (each switch computes the same update) ------------------------------------------
    #: ``torch.compile`` the sequential steps of the update (RSSM observe and imagination steps,
    #: actor step), lazily at the first update: ``off``, ``default`` (inductor), ``max-autotune``,
    #: ``max-autotune-no-cudagraphs`` or ``reduce-overhead`` (CUDA graphs; on CPU: ``default``)
    compile: Literal["off", "default", "reduce-overhead", "max-autotune",
                     "max-autotune-no-cudagraphs"] = "off"
    #: channels-last memory format for the conv encoder / decoder (image observations)
    channels_last: bool = False
    #: ``bf16``: the world-model loss and imagination under bf16 autocast (CUDA only)
    autocast: Literal["off", "bf16"] = "off"
    #: at the first update, keep freed memory in the learner process (glibc: no fresh pages and
    #: page faults for the update's large tensors at every step; ``distwm.utils.allocator``)
    keep_freed_memory: bool = True
    #: torch intra-op threads for the RSSM's observe loop on CPU, forward and backward (its
    #: steps have B rows, too few for a second thread to pay for its wake-up); 0: the process's
    observe_threads: int = 1
    #: REINFORCE imagination on CPU: split the starts' rollout over this many Python threads,
    #: each with torch_threads // n intra-op threads (distwm.models.dreamer.split_rollout); 1: off
    imagine_split: int = 2
    #: the observe loop's linear layers get their weight gradients as one matmul each at the end
    #: of the backward instead of one per step (eager float32; distwm.blocks.deferred_grads)
    defer_weight_grads: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.validate()

    # -- resolution ---------------------------------------------------------------------------
    def resolved(self) -> "DreamerConfig":
        """A copy with every ``None`` replaced by the version or size-preset default."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key, default in VERSION_DEFAULTS[self.version].items():
            if values[key] is None:
                values[key] = default
        sizes = MODEL_SIZES[values["model_size"]]
        for key in _SIZE_FIELDS:
            if values[key] is None:
                values[key] = sizes[key]
        derived = dict(head_layers=values["num_layers"], actor_unimix=values["unimix"],
                       ac_epsilon=max(values["adam_epsilon"], 1e-5))
        for key, value in derived.items():
            if values[key] is None:
                values[key] = value
        blocks, deter = values["deter_blocks"], values["deter_size"]
        if blocks and deter % blocks:
            raise ValueError(f"DreamerConfig.deter_size ({deter}) must be divisible by "
                             f"deter_blocks ({blocks}) for the block GRU; set deter_blocks=0 "
                             "for the dense GRU or another deter_size")
        if values["kl_dyn_scale"] is None or values["kl_rep_scale"] is None:
            coeff = values["kl_loss_coeff"] if values["kl_loss_coeff"] is not None else 1.0
            alpha = values["kl_alpha"]
            # No balancing (V1): KL(post || prior) sends the full gradient to both sides.
            dyn, rep = (coeff, coeff) if alpha is None else (coeff * alpha, coeff * (1.0 - alpha))
            values["kl_dyn_scale"] = dyn if values["kl_dyn_scale"] is None else values["kl_dyn_scale"]
            values["kl_rep_scale"] = rep if values["kl_rep_scale"] is None else values["kl_rep_scale"]
        if values["latent"] == "gaussian":
            values["stoch_classes"] = 0
        return type(self)(**values)

    @property
    def stoch_dim(self) -> int:
        """Width of the flattened stochastic state (needs a resolved config)."""
        cfg = self if self.latent is not None else self.resolved()
        return cfg.stoch_size * (cfg.stoch_classes if cfg.latent == "categorical" else 1)

    # -- validation ---------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field and what it accepts."""
        if self.version not in VERSION_DEFAULTS:
            raise ValueError(
                f"DreamerConfig.version {self.version!r} is not one of {sorted(VERSION_DEFAULTS)}"
            )
        if self.model_size is not None and self.model_size not in MODEL_SIZES:
            raise ValueError(
                f"DreamerConfig.model_size {self.model_size!r} is not one of {list(MODEL_SIZES)}"
            )
        positive_ints = ("total_steps", "num_envs", "buffer_size", "imagine_horizon",
                         "max_nonfinite_updates", "num_buckets", *_SIZE_FIELDS[:4],
                         "batch_size", "train_seq_len", "stoch_size")
        for name in positive_ints:
            _check(name, getattr(self, name), "a positive integer", int, lambda v: v > 0)
        for name in ("seed_steps", "stoch_classes", "obs_embed_size", "slow_critic_interval",
                     "deter_blocks", "prior_layers", "head_layers", "warmup_steps", "replay_context"):
            _check(name, getattr(self, name), "an integer >= 0", int, lambda v: v >= 0)
        _check("buffer_memory_limit", self.buffer_memory_limit,
               "a fraction of the available memory in (0, 1] (or None)", float, lambda v: 0 < v <= 1)
        for name in ("discount", "td_lambda", "kl_alpha", "unimix", "slow_critic_fraction",
                     "return_norm_decay", "actor_unimix"):
            _check(name, getattr(self, name), "a number in [0, 1]", float, lambda v: 0 <= v <= 1)
        for name in ("train_ratio", "model_learning_rate", "actor_learning_rate",
                     "value_learning_rate", "adam_epsilon", "ac_epsilon", "symlog_range",
                     "return_norm_limit"):
            _check(name, getattr(self, name), "a number > 0", float, lambda v: v > 0)
        for name in ("free_nats", "actor_entropy", "action_noise", "kl_loss_coeff", "action_clip",
                     "kl_dyn_scale", "kl_rep_scale", "disc_loss_coeff", "slow_critic_reg",
                     "grad_clip_norm", "ac_grad_clip_norm", "repval_loss_scale", "agc",
                     "actor_outscale"):
            _check(name, getattr(self, name), "a number >= 0", float, lambda v: v >= 0)
        percentiles = self.return_norm_percentiles
        if (not isinstance(percentiles, (tuple, list)) or len(percentiles) != 2
                or not all(_is_number(p) for p in percentiles)
                or not 0.0 <= percentiles[0] < percentiles[1] <= 100.0):
            raise ValueError(
                "DreamerConfig.return_norm_percentiles must be (low, high) with "
                f"0 <= low < high <= 100, got {percentiles!r}"
            )
        if self.latent == "categorical" and self.stoch_classes is not None and self.stoch_classes < 2:
            raise ValueError(
                f"DreamerConfig.stoch_classes must be >= 2 for categorical latents, got {self.stoch_classes!r}"
            )
        if self.activation is not None:
            check_activation("DreamerConfig.activation", self.activation)
        speed = {"compile": ("off", "default", "reduce-overhead", "max-autotune",
                             "max-autotune-no-cudagraphs"), "autocast": ("off", "bf16")}
        for name, choices in speed.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"DreamerConfig.{name} {getattr(self, name)!r} is not one of {choices}")
        if isinstance(self.observe_threads, bool) or not isinstance(self.observe_threads, int) \
                or self.observe_threads < 0:
            raise ValueError("DreamerConfig.observe_threads must be an int >= 0 (0: the "
                             f"process's torch threads), got {self.observe_threads!r}")
        if isinstance(self.imagine_split, bool) or not isinstance(self.imagine_split, int) \
                or self.imagine_split < 1:
            raise ValueError("DreamerConfig.imagine_split must be an int >= 1 (1: one thread), "
                             f"got {self.imagine_split!r}")
        for name in ("channels_last", "keep_freed_memory", "defer_weight_grads"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"DreamerConfig.{name} must be True or False, got {getattr(self, name)!r}")
        inits = ("torch", "xavier_uniform", "trunc_normal", "trunc_normal_in")
        if self.weight_init is not None and self.weight_init not in inits:
            raise ValueError(f"DreamerConfig.weight_init {self.weight_init!r} is not one of {inits}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(name: str, value, what: str, kind: type, ok) -> None:
    """``ValueError`` unless ``value`` is ``None`` or a ``kind`` (an int counts as a float)
    for which ``ok(value)`` holds."""
    if value is None:
        return
    right_type = isinstance(value, int) and not isinstance(value, bool) if kind is int else _is_number(value)
    if not right_type or not ok(value):
        raise ValueError(f"DreamerConfig.{name} must be {what}, got {value!r}")


def dreamer_v1_config() -> DreamerConfig:
    """DreamerV1 defaults: Gaussian latents, free nats, MSE heads, dynamics backprop."""
    return DreamerConfig(version="v1")


def dreamer_v2_config() -> DreamerConfig:
    """DreamerV2 defaults: 32 x 32 categorical latents, KL balancing with alpha 0.8."""
    return DreamerConfig(version="v2")


def dreamer_v3_config() -> DreamerConfig:
    """DreamerV3 as published (size S): symlog two-hot heads, KL 0.5/0.1, free bits 1."""
    return DreamerConfig(version="v3")


def dreamer_v3_2024_config() -> DreamerConfig:
    """DreamerV3 as its authors' code runs it now (2024): replayed-value loss, block GRU with
    RMSNorm, symexp two-hot bins, LaProp with AGC and warmup, REINFORCE everywhere."""
    return DreamerConfig(version="v3-2024")
