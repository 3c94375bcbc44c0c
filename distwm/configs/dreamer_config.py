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
from typing import Any, ClassVar, Literal, Optional

from distwm.configs.activations import check_activation
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

#: Network widths of the DreamerV3 size presets (paper table B; RLlib uses the same numbers).
#: ``stoch_size`` x ``stoch_classes`` categorical latents; ``cnn_depth`` is the first conv width.
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(deter_size=32, num_units=32, num_layers=1, cnn_depth=4, stoch_size=4, stoch_classes=4),
    "XS": dict(deter_size=256, num_units=256, num_layers=1, cnn_depth=24, stoch_size=32, stoch_classes=32),
    "S": dict(deter_size=512, num_units=512, num_layers=2, cnn_depth=32, stoch_size=32, stoch_classes=32),
    "M": dict(deter_size=1024, num_units=640, num_layers=3, cnn_depth=48, stoch_size=32, stoch_classes=32),
    "L": dict(deter_size=2048, num_units=768, num_layers=4, cnn_depth=64, stoch_size=32, stoch_classes=32),
    "XL": dict(deter_size=4096, num_units=1024, num_layers=5, cnn_depth=96, stoch_size=32, stoch_classes=32),
    # The sizes of the DreamerV1 (Gaussian, 30 dims) and DreamerV2 (32 x 32) papers.
    "paper-v1": dict(deter_size=200, num_units=400, num_layers=3, cnn_depth=32, stoch_size=30, stoch_classes=0),
    "paper-v2": dict(deter_size=600, num_units=400, num_layers=4, cnn_depth=48, stoch_size=32, stoch_classes=32),
    # The current dreamerv3 code's sizes (size1m ... size400m; its RSSM's hidden width = units,
    # 3 layers in the encoder, decoder, actor and critic, 1 in the reward and continue heads).
    "1m": dict(deter_size=512, num_units=64, num_layers=3, cnn_depth=4, stoch_size=32, stoch_classes=4),
    "12m": dict(deter_size=2048, num_units=256, num_layers=3, cnn_depth=16, stoch_size=32, stoch_classes=16),
    "25m": dict(deter_size=3072, num_units=384, num_layers=3, cnn_depth=24, stoch_size=32, stoch_classes=24),
    "50m": dict(deter_size=4096, num_units=512, num_layers=3, cnn_depth=32, stoch_size=32, stoch_classes=32),
    "100m": dict(deter_size=6144, num_units=768, num_layers=3, cnn_depth=48, stoch_size=32, stoch_classes=48),
    "200m": dict(deter_size=8192, num_units=1024, num_layers=3, cnn_depth=64, stoch_size=32, stoch_classes=64),
    "400m": dict(deter_size=12288, num_units=1536, num_layers=3, cnn_depth=96, stoch_size=32, stoch_classes=96),
}

#: The fields only the current dreamerv3 code changed, at their V1/V2/V3 (2023) values; ``None``
#: is derived in :meth:`DreamerConfig.resolved` (``head_layers``: ``num_layers``;
#: ``actor_unimix``: ``unimix``; ``ac_epsilon``: ``max(adam_epsilon, 1e-5)``).
_BEFORE_2024: dict[str, Any] = dict(
    norm="layer", deter_blocks=0, prior_layers=1, head_layers=None, twohot_bins="symlog",
    cont_discount=False, actor_outscale=1.0, actor_unimix=None, repval_loss_scale=0.0,
    repval_grad=False, update_mode="sequential", optimizer="adam", agc=0.0, warmup_steps=0,
    ac_epsilon=None, return_norm_init="first",
)

#: Algorithmic defaults per version, for every field left at ``None``.
VERSION_DEFAULTS: dict[str, dict[str, Any]] = {
    "v1": dict(
        model_size="paper-v1", latent="gaussian", activation="elu", layer_norm=False,
        unimix=0.0, learned_initial_state=False, symlog_obs=False,
        reward_head="normal", critic_head="normal", use_disc_model=False, disc_loss_coeff=10.0,
        imagine_cont="prob",
        kl_loss_coeff=1.0, kl_alpha=None, kl_dyn_scale=None, kl_rep_scale=None,
        free_nats=3.0, free_nats_per_step=False,
        discount=0.99, actor_dist="tanh_normal", actor_grad="dynamics", actor_entropy=0.0,
        action_clip=0.0, actor_baseline=False, weight_init="xavier_uniform",
        action_noise=0.3, return_norm=False, slow_critic_fraction=1.0,
        slow_critic_interval=0, slow_critic_reg=0.0, slow_critic_target=False,
        model_learning_rate=6e-4, actor_learning_rate=8e-5, value_learning_rate=8e-5,
        adam_epsilon=1e-7, grad_clip_norm=100.0, ac_grad_clip_norm=100.0,
        batch_size=50, train_seq_len=50, train_ratio=250.0, seed_steps=5000, **_BEFORE_2024,
    ),
    "v2": dict(
        model_size="paper-v2", latent="categorical", activation="elu", layer_norm=True,
        unimix=0.0, learned_initial_state=False, symlog_obs=False,
        reward_head="normal", critic_head="normal", use_disc_model=True, disc_loss_coeff=5.0,
        imagine_cont="prob",
        kl_loss_coeff=1.0, kl_alpha=0.8, kl_dyn_scale=None, kl_rep_scale=None,
        free_nats=1.0, free_nats_per_step=False,
        discount=0.99, actor_dist="tanh_normal", actor_grad="auto", actor_entropy=1e-4,
        action_clip=0.0, actor_baseline=False, weight_init="xavier_uniform",
        action_noise=0.0, return_norm=False, slow_critic_fraction=1.0,
        slow_critic_interval=100, slow_critic_reg=0.0, slow_critic_target=True,
        model_learning_rate=3e-4, actor_learning_rate=8e-5, value_learning_rate=8e-5,
        adam_epsilon=1e-5, grad_clip_norm=100.0, ac_grad_clip_norm=100.0,
        batch_size=16, train_seq_len=50, train_ratio=512.0, seed_steps=5000, **_BEFORE_2024,
    ),
    "v3": dict(
        model_size="S", latent="categorical", activation="silu", layer_norm=True,
        unimix=0.01, learned_initial_state=True, symlog_obs=True,
        reward_head="twohot", critic_head="twohot", use_disc_model=True, disc_loss_coeff=1.0,
        imagine_cont="mode",
        kl_loss_coeff=None, kl_alpha=None, kl_dyn_scale=0.5, kl_rep_scale=0.1,
        free_nats=1.0, free_nats_per_step=True,
        discount=0.997, actor_dist="normal", actor_grad="auto", actor_entropy=3e-4,
        action_clip=1.0, actor_baseline=True, weight_init="trunc_normal",
        action_noise=0.0, return_norm=True, slow_critic_fraction=0.02,
        slow_critic_interval=1, slow_critic_reg=1.0, slow_critic_target=False,
        model_learning_rate=1e-4, actor_learning_rate=3e-5, value_learning_rate=3e-5,
        adam_epsilon=1e-8, grad_clip_norm=1000.0, ac_grad_clip_norm=100.0,
        batch_size=16, train_seq_len=64, train_ratio=512.0, seed_steps=1024, **_BEFORE_2024,
    ),
    # The current dreamerv3 code (danijar/dreamerv3, 2024), its DMC proprio preset (size1m,
    # train ratio 1024); for its DMC vision one set model_size=200m, train_ratio=256.
    "v3-2024": dict(
        model_size="1m", latent="categorical", activation="silu", layer_norm=True, norm="rms",
        unimix=0.01, learned_initial_state=False, symlog_obs=True,
        reward_head="twohot", critic_head="twohot", twohot_bins="symexp",
        use_disc_model=True, disc_loss_coeff=1.0, imagine_cont="prob", cont_discount=True,
        deter_blocks=8, prior_layers=2, head_layers=1,
        kl_loss_coeff=None, kl_alpha=None, kl_dyn_scale=1.0, kl_rep_scale=0.1,
        free_nats=1.0, free_nats_per_step=True,
        discount=1.0 - 1.0 / 333.0, actor_dist="normal", actor_grad="reinforce", actor_entropy=3e-4,
        action_clip=1.0, actor_baseline=True, weight_init="trunc_normal_in", actor_outscale=0.01,
        actor_unimix=0.0, action_noise=0.0, return_norm=True, return_norm_init="zero",
        slow_critic_fraction=0.02, slow_critic_interval=1, slow_critic_reg=1.0,
        slow_critic_target=False, repval_loss_scale=0.3, repval_grad=True, update_mode="joint",
        optimizer="laprop", agc=0.3, warmup_steps=1000,
        model_learning_rate=4e-5, actor_learning_rate=4e-5, value_learning_rate=4e-5,
        adam_epsilon=1e-20, ac_epsilon=1e-20, grad_clip_norm=0.0, ac_grad_clip_norm=0.0,
        batch_size=16, train_seq_len=64, train_ratio=1024.0, seed_steps=1024,
    ),
}


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
                     "deter_blocks", "prior_layers", "head_layers", "warmup_steps"):
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
