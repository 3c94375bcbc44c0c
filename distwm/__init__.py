"""distwm: world-model reinforcement learning as a Ray distributed actor-learner system.

The top-level namespace mirrors TorchWM's ``torchwm`` module::

    import distwm
    distwm.list_models()
    agent = distwm.create_model("dreamer", env="walker-walk")
    env = distwm.make_env("cartpole-swingup")

Everything is imported lazily: ``import distwm`` and ``distwm.list_models()`` import neither
torch, ray nor any simulator.
"""

from __future__ import annotations



__version__ = "0.1.0"

from distwm._lazy import lazy_exports  # noqa: E402
from distwm.api import (  # noqa: E402  (light: no torch/ray)
    EnvBackendSpec,
    ModelSpec,
    create_config,
    create_model,
    get_env_backend_spec,
    get_model_spec,
    list_env_backends,
    list_envs,
    list_models,
    make_env,
)

# name -> module that defines it (imported on first attribute access)
_LAZY: dict[str, str] = {
    # configs
    "DreamerConfig": "distwm.configs.dreamer_config",
    "PlanetConfig": "distwm.configs.planet_config",
    # utilities
    "compute_lambda_return": "distwm.utils",
    # Dreamer
    "DreamerAgent": "distwm.models.dreamer",
    "Dreamer": "distwm.models.dreamer",
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
    # PlaNet and the modular RSSM
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
    "ModularRSSM": "distwm.models.modular_rssm",
    "create_modular_rssm": "distwm.models.modular_rssm",
}

__all__ = [
    "__version__",
    "EnvBackendSpec",
    "ModelSpec",
    "create_config",
    "create_model",
    "get_env_backend_spec",
    "get_model_spec",
    "list_env_backends",
    "list_envs",
    "list_models",
    "make_env",
    *sorted(_LAZY),
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
