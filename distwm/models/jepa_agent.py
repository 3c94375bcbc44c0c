"""The seed's ``world_models.models.jepa_agent``: :class:`JEPAAgent`, the convenience interface
of I-JEPA training in this process.

``JEPAAgent(config, **overrides).train()`` runs :func:`distwm.training.train_jepa.run_training`:
the single-process case of the data-parallel path, the same
:meth:`~distwm.models.jepa.trainable.JEPATrainable.update` on batches of CIFAR-10, ImageNet, an
image folder or scikit-learn's digits, with progress (updates/s, ETA), checkpoints and the
in-run linear probe. ``create_model("jepa", dataset="digits", ...)`` builds one. Unlike the seed,
the constructor writes nothing: the output folder and its ``params-ijepa.yaml`` are made by
:meth:`train`.
"""

from __future__ import annotations

from typing import Any, Mapping

from distwm.configs.jepa_config import JEPAConfig

__all__ = ["JEPAAgent"]


class JEPAAgent:
    """Convenience interface for configuring and launching JEPA training runs.

    ``config``: a :class:`JEPAConfig`, its nested or flat dict, or None (the defaults);
    ``kwargs``: config fields to override, ``logdir`` (= ``folder``) and ``device`` (default:
    CUDA when available). After :meth:`train`, ``trainable`` holds the trained
    :class:`~distwm.models.jepa.trainable.JEPATrainable` and ``summary`` the run's figures.
    """

    def __init__(self, config: JEPAConfig | Mapping[str, Any] | None = None, **kwargs: Any):
        if config is None:
            config = JEPAConfig()
        elif isinstance(config, Mapping):
            config = JEPAConfig.from_dict(config)
        elif not isinstance(config, JEPAConfig):
            raise ValueError(f"JEPAAgent takes a JEPAConfig or a dict, got {type(config).__name__}")
        self.device = kwargs.pop("device", None)
        if "logdir" in kwargs:
            if "folder" in kwargs:
                raise ValueError("JEPAAgent: give logdir or folder, not both (they are the same)")
            kwargs["folder"] = kwargs.pop("logdir")
        self.cfg = config.replace(**kwargs) if kwargs else config
        self.trainable: Any = None
        self.summary: dict[str, Any] | None = None

    @property
    def config(self) -> JEPAConfig:
        return self.cfg

    def train(self, resume: bool = False) -> dict[str, Any]:
        """Train (see the module docstring); ``resume``: continue from ``<folder>/<write_tag>-
        latest.pth.tar`` (or ``read_checkpoint``). Returns the run's summary."""
        from distwm.training.train_jepa import main, run_training

        if self.cfg.enable_sweep:
            return main(self.cfg)
        self.trainable, self.summary = run_training(self.cfg, resume=resume, device=self.device)
        return self.summary
