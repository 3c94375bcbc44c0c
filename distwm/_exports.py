"""The built-in catalog, in one place: model families, env backends and the package's lazy names.

A family adds itself here: its :class:`~distwm.registry.ModelSpec` rows in
:data:`BUILTIN_MODELS` (protocol class, kind, env backends) and its public names in
:data:`EXPORTS`. ``distwm`` exports every name of :data:`EXPORTS`, ``distwm.models`` those
whose module is under ``distwm.models`` (:data:`MODELS_EXPORTS`). Names resolve lazily:
importing this module imports neither torch, ray nor a simulator.
"""

from __future__ import annotations

from distwm.registry import EnvBackendSpec, ModelSpec

__all__ = ["BUILTIN_ENV_BACKENDS", "BUILTIN_MODELS", "EXPORTS", "MODELS_EXPORTS"]

_DREAMER = "distwm.models.dreamer:DreamerAgent"
_DREAMER_CONFIGS = "distwm.configs.dreamer_config"
# The protocol class of Dreamer (the seed's name ``Dreamer`` is the same class).
_DREAMER_CORE = "distwm.models.dreamer.core:DreamerCore"
_PLANET_CORE = "distwm.models.planet.core:PlanetCore"
_IRIS_CORE = "distwm.models.iris.core:IRISCore"
_DIAMOND_CORE = "distwm.models.diamond.core:DiamondCore"
_GENIE_TRAINABLE = "distwm.models.genie.trainable:GenieTrainable"
_GENIE_CONFIGS = "distwm.configs.genie_config"
_DIT_TRAINABLE = "distwm.models.dit.trainable:DiTTrainable"
_JEPA_TRAINABLE = "distwm.models.jepa.trainable:JEPATrainable"
_JEPA_CONFIGS = "distwm.configs.jepa_config"
_ALL_BACKENDS: tuple[str, ...] = ()  # empty: every backend
_STATE_OR_PIXEL_BACKENDS = ("dmc", "gym", "mujoco")


def _dreamer(name: str, config: str, description: str, aliases: tuple[str, ...]) -> ModelSpec:
    return ModelSpec(name, _DREAMER, f"{_DREAMER_CONFIGS}:{config}", description, aliases,
                     protocol_path=_DREAMER_CORE, kind="rl-agent", backends=_ALL_BACKENDS)


#: Built-in models. ``list_models`` shows only those whose implementation is installed.
BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    _dreamer("dreamer", "dreamer_v3_config",
             "DreamerV3 agent (discrete latents, symlog two-hot heads); alias of dreamer-v3",
             ("dreamer-agent", "dreameragent")),
    _dreamer("dreamer-v1", "dreamer_v1_config", "DreamerV1: Gaussian latents, free nats, MSE heads",
             ("dreamerv1",)),
    _dreamer("dreamer-v2", "dreamer_v2_config", "DreamerV2: categorical latents, KL balancing 0.8",
             ("dreamerv2",)),
    _dreamer("dreamer-v3", "dreamer_v3_config", "DreamerV3 as published", ("dreamerv3",)),
    _dreamer("dreamer-v3-2024", "dreamer_v3_2024_config",
             "DreamerV3 as its authors' current code runs it (repval, block GRU, LaProp, ...)",
             ("dreamerv3-2024",)),
    ModelSpec("planet", "distwm.models.planet:Planet", "distwm.configs.planet_config:PlanetConfig",
              "PlaNet: latent planning with CEM over a recurrent state-space model", ("planet-agent",),
              protocol_path=_PLANET_CORE, kind="rl-agent", backends=_STATE_OR_PIXEL_BACKENDS),
    ModelSpec("iris", "distwm.models.iris_agent:IRISAgent", "distwm.configs.iris_config:IRISConfig",
              "IRIS: discrete autoencoder + transformer world model, actor-critic in imagination",
              ("iris-agent", "irisagent"), protocol_path=_IRIS_CORE, kind="rl-agent",
              backends=("atari", "gym", "dmc")),
    ModelSpec("diamond", "distwm.training.train_diamond:DiamondAgent", "distwm.configs.diamond_config:DiamondConfig",
              "DIAMOND: EDM diffusion world model over frames, reward/end model, actor-critic in imagination",
              ("diamond-agent", "diamondagent"), protocol_path=_DIAMOND_CORE, kind="rl-agent",
              backends=("atari", "minatar", "gym", "dmc")),
    ModelSpec("genie", "distwm.models.genie:genie_from_config", f"{_GENIE_CONFIGS}:GenieConfig",
              "Genie: video tokenizer, latent action model, MaskGIT dynamics (trained on video)",
              ("genie-base",), protocol_path=_GENIE_TRAINABLE, kind="dataset-trained"),
    ModelSpec("genie-small", "distwm.models.genie:genie_from_config",
              f"{_GENIE_CONFIGS}:GenieSmallConfig", "Genie at the seed's small size (64x64, 16 frames)",
              (), protocol_path=_GENIE_TRAINABLE, kind="dataset-trained"),
    ModelSpec("genie-large", "distwm.models.genie:create_genie_large", None,
              "Genie at the paper's 11B size (bfloat16)", (), kind="component"),
    ModelSpec("jepa", "distwm.models.jepa_agent:JEPAAgent", f"{_JEPA_CONFIGS}:JEPAConfig",
              "I-JEPA: ViT context encoder, narrow predictor and EMA target encoder on multiblock "
              "masks (trained on images)", ("ijepa", "i-jepa", "jepa-agent"),
              protocol_path=_JEPA_TRAINABLE, kind="dataset-trained"),
    ModelSpec("jepa-digits", "distwm.models.jepa_agent:JEPAAgent", f"{_JEPA_CONFIGS}:jepa_digits_config",
              "I-JEPA's CPU learning check: a 3-layer ViT on scikit-learn's digits at 32x32",
              (), protocol_path=_JEPA_TRAINABLE, kind="dataset-trained"),
    ModelSpec("dit", "distwm.models.dit:create_dit", "distwm.configs.dit_config:DiTConfig",
              "DiT: diffusion transformer (adaLN-Zero, DDPM with learned sigma, classifier-free "
              "guidance) trained on images", ("diffusion-transformer",),
              protocol_path=_DIT_TRAINABLE, kind="dataset-trained"),
    ModelSpec("modular-rssm", "distwm.models.modular_rssm:create_modular_rssm", None,
              "RSSM with swappable encoder, decoder and recurrent backbone", ("rssm", "modularrssm"),
              kind="component", backends=_STATE_OR_PIXEL_BACKENDS),
)

#: Built-in env backends; each factory is ``factory(env_id, **kwargs) -> gymnasium.Env``.
BUILTIN_ENV_BACKENDS: tuple[EnvBackendSpec, ...] = (
    EnvBackendSpec("gym", "distwm.envs.gym_env:make_gym_env",
                   "Gymnasium registry ids (state, or image from render)",
                   ("gymnasium", "gym-env", "classic-control")),
    EnvBackendSpec("dmc", "distwm.envs.dmc:make_dmc_env",
                   "DeepMind Control Suite (domain-task ids), state and/or pixels",
                   ("dm-control", "dmcontrol", "deepmind-control", "dm-control-suite")),
    EnvBackendSpec("atari", "distwm.envs.ale_atari_env:make_atari_env",
                   "Arcade Learning Environment via ale-py (ROMs included)", ("ale", "ale-py")),
    EnvBackendSpec("minatar", "distwm.envs.minatar_env:make_minatar_env",
                   "MinAtar's five miniature Atari games, state and RGB (extra: minatar)", ("min-atar",)),
    EnvBackendSpec("crafter", "distwm.envs.crafter_env:make_crafter_env",
                   "Crafter's open-world survival game, 64x64 RGB, 22 achievements (extra: crafter)", ()),
    EnvBackendSpec("mujoco", "distwm.envs.mujoco_env:make_mujoco_env",
                   "Native MuJoCo from an MJCF .xml or .mjb file", ("mj", "native-mujoco")),
    EnvBackendSpec("robotics", "distwm.envs.robotics_env:make_robotics_env",
                   "Gymnasium-Robotics tasks (extra: robotics)",
                   ("gymnasium-robotics", "gym-robotics")),
    EnvBackendSpec("brax", "distwm.envs.brax_env:make_brax_env",
                   "Brax physics on CPU JAX (extra: brax)", ()),
    EnvBackendSpec("unity", "distwm.envs.unity_env:make_unity_mlagents_env",
                   "Unity ML-Agents executable (extra: unity)",
                   ("mlagents", "ml-agents", "unity-mlagents")),
)


#: Public name -> module that defines it (imported on first attribute access).
EXPORTS: dict[str, str] = {
    # configs
    "DreamerConfig": "distwm.configs.dreamer_config",
    "PlanetConfig": "distwm.configs.planet_config",
    # utilities
    "compute_lambda_return": "distwm.utils",
    # Dreamer
    "DreamerAgent": "distwm.models.dreamer",
    "Dreamer": "distwm.models.dreamer",
    "DreamerCore": "distwm.models.dreamer.core",
    "RSSM": "distwm.models.dreamer_rssm",
    "ConvEncoder": "distwm.vision.dreamer_encoder",
    "ConvDecoder": "distwm.vision.dreamer_decoder",
    "DenseDecoder": "distwm.vision.dreamer_decoder",
    "ActionDecoder": "distwm.vision.dreamer_decoder",
    "TanhBijector": "distwm.blocks.dreamer_distributions",
    "SampleDist": "distwm.blocks.dreamer_distributions",
    "ReplayBuffer": "distwm.memory.dreamer_memory",
    "DreamerOperator": "distwm.inference.operators.dreamer_operator",
    "get_operator": "distwm.inference.operators",
    # PlaNet
    "Planet": "distwm.models.planet",
    "PlanetCore": "distwm.models.planet.core",
    "PlanetAgent": "distwm.models.planet_agent",
    "RecurrentStateSpaceModel": "distwm.models.rssm",
    "CNNEncoder": "distwm.vision.planet_encoder",
    "CNNDecoder": "distwm.vision.planet_decoder",
    "RewardModel": "distwm.models.rssm_heads",
    "ValueModel": "distwm.models.rssm_heads",
    "Memory": "distwm.memory.planet_memory",
    "Episode": "distwm.memory.planet_memory",
    "RSSMPolicy": "distwm.controller.rssm_policy",
    "RolloutGenerator": "distwm.controller.rollout_generator",
    "PlaNetOperator": "distwm.inference.operators.planet_operator",
    "OperatorABC": "distwm.inference.operators.base",
    # IRIS
    "IRISConfig": "distwm.configs.iris_config",
    "IRISAgent": "distwm.models.iris_agent",
    "IRISCore": "distwm.models.iris.core",
    "IRISTransformer": "distwm.models.iris_transformer",
    "IRISWorldModel": "distwm.models.iris_transformer",
    "IRISEncoder": "distwm.vision.iris_encoder",
    "IRISDecoder": "distwm.vision.iris_decoder",
    "DiscreteAutoencoder": "distwm.vision.iris_decoder",
    "VectorQuantizer": "distwm.vision.vq_layer",
    "VectorQuantizerEMA": "distwm.vision.vq_layer",
    "IRISActor": "distwm.controller.iris_policy",
    "IRISCritic": "distwm.controller.iris_policy",
    "IRISPolicy": "distwm.controller.iris_policy",
    "CNNFeatureExtractor": "distwm.controller.iris_policy",
    "IRISReplayBuffer": "distwm.memory.iris_memory",
    "IRISOnPolicyBuffer": "distwm.memory.iris_memory",
    "IrisOperator": "distwm.inference.operators.iris_operator",
    "IRISTrainer": "distwm.training.train_iris",
    # DIAMOND
    "DiamondConfig": "distwm.configs.diamond_config",
    "DiamondAgent": "distwm.training.train_diamond",
    "DiamondCore": "distwm.models.diamond.core",
    "DiamondModel": "distwm.models.diamond.model",
    "DiffusionUNet": "distwm.models.diffusion.diamond_diffusion",
    "EDMPreconditioner": "distwm.models.diffusion.diamond_diffusion",
    "EulerSampler": "distwm.models.diffusion.diamond_diffusion",
    "RewardTerminationModel": "distwm.models.diffusion.reward_termination",
    "ActorCriticNetwork": "distwm.models.diffusion.actor_critic",
    "train_diamond": "distwm.training.train_diamond",
    # Genie
    "Genie": "distwm.models.genie",
    "GenieTrainable": "distwm.models.genie.trainable",
    "create_genie": "distwm.models.genie",
    "create_genie_small": "distwm.models.genie",
    "create_genie_large": "distwm.models.genie",
    "LatentActionModel": "distwm.models.latent_action_model",
    "create_latent_action_model": "distwm.models.latent_action_model",
    "DynamicsModel": "distwm.models.dynamics_model",
    "create_dynamics_model": "distwm.models.dynamics_model",
    "VideoTokenizer": "distwm.vision.video_tokenizer",
    "create_video_tokenizer": "distwm.vision.video_tokenizer",
    "STTransformer": "distwm.blocks.st_transformer",
    "MultiHeadSelfAttention": "distwm.blocks.mhsa",
    "MultiHeadAttention": "distwm.blocks.mhsa",
    "RMSNorm": "distwm.blocks.normalization",
    "AdaLNNormalization": "distwm.blocks.normalization",
    "GenieConfig": "distwm.configs.genie_config",
    "GenieSmallConfig": "distwm.configs.genie_config",
    "STTransformerConfig": "distwm.configs.genie_config",
    "VideoTokenizerConfig": "distwm.configs.genie_config",
    "LatentActionModelConfig": "distwm.configs.genie_config",
    "DynamicsModelConfig": "distwm.configs.genie_config",
    # I-JEPA
    "JEPAAgent": "distwm.models.jepa_agent",
    "JEPATrainable": "distwm.models.jepa.trainable",
    "JEPAConfig": "distwm.configs.jepa_config",
    "JEPAOperator": "distwm.inference.operators.jepa_operator",
    # DiT
    "DiT": "distwm.models.diffusion.DiT",
    "PatchEmbed": "distwm.models.diffusion.DiT",
    "PatchUnEmbed": "distwm.models.diffusion.DiT",
    "sinusoidal_time_embedding": "distwm.models.diffusion.DiT",
    "DDPM": "distwm.models.diffusion.DDPM",
    "DiTConfig": "distwm.configs.dit_config",
    "get_dit_config": "distwm.configs.dit_config",
    "DiTTrainable": "distwm.models.dit.trainable",
    "create_dit": "distwm.models.dit.factory",
    # the modular RSSM
    "ModularRSSM": "distwm.models.modular_rssm",
    "create_modular_rssm": "distwm.models.modular_rssm",
}

#: The names ``distwm.models`` exports: those defined under ``distwm.models``.
MODELS_EXPORTS: dict[str, str] = {name: module for name, module in EXPORTS.items()
                                  if module.startswith("distwm.models.")}
