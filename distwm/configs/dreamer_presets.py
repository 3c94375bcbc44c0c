"""The presets of :class:`~distwm.configs.dreamer_config.DreamerConfig`: network widths per
``model_size`` and algorithmic defaults per ``version`` (re-exported by ``dreamer_config``)."""

from __future__ import annotations

from typing import Any

__all__ = ["MODEL_SIZES", "VERSION_DEFAULTS"]

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
    ac_epsilon=None, return_norm_init="first", replay_online=False, replay_context=0,
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
        replay_online=True, replay_context=1,
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
