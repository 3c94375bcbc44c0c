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

from distwm._exports import EXPORTS  # noqa: E402
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

# name -> module that defines it (imported on first attribute access); a family adds its
# names in distwm/_exports.py
_LAZY: dict[str, str] = dict(EXPORTS)

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
