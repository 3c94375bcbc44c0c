"""DIAMOND's training schedule, read off a :class:`~distwm.configs.diamond_config.DiamondConfig`:
an initial collection, then epochs of ``environment_steps_per_epoch`` env steps and
``training_steps_per_epoch`` gradient steps of each component (the first epoch longer), as the
reference code's ``config/trainer.yaml`` runs it."""

from __future__ import annotations

__all__ = ["COMPONENTS", "DiamondSchedule"]

#: the three trained parts, as :meth:`DiamondSchedule.start_update` and ``component_steps`` name them
COMPONENTS = ("diffusion", "reward", "actor")


class DiamondSchedule:
    """The schedule's derived figures (a mixin of ``DiamondConfig``: it reads the config's
    ``total_steps``, ``num_epochs``, ``initial_collection_steps``, ``environment_steps_per_epoch``,
    ``training_steps_per_epoch`` and ``<component>_steps_first_epoch`` fields)."""

    @property
    def updates_per_env_step(self) -> float:
        """Agent updates (one step of each started component) per env step after the first
        epoch: 400 / 100."""
        return self.training_steps_per_epoch / self.environment_steps_per_epoch

    @property
    def prefill_steps(self) -> int:
        """Env steps collected before the first update (the initial collection's minimum)."""
        return self.initial_collection_steps

    @property
    def collection_epochs(self) -> int:
        """Epochs that collect, after a minimal initial collection: (100k - 5k) / 100 = 950."""
        return (self.total_steps - self.initial_collection_steps) // self.environment_steps_per_epoch

    @property
    def final_epochs(self) -> int:
        """Epochs at the end that only train (1000 - 950 = 50)."""
        return max(0, self.num_epochs - self.collection_epochs)

    def _steps_first_epoch(self, component: str) -> int:
        if component not in COMPONENTS:
            raise ValueError(f"Unknown DIAMOND component {component!r}; valid: {', '.join(COMPONENTS)}")
        return getattr(self, f"{component}_steps_first_epoch")

    @property
    def first_epoch_updates(self) -> int:
        """Agent updates of the first epoch: the longest component's first-epoch steps."""
        return max(self._steps_first_epoch(c) for c in COMPONENTS)

    def start_update(self, component: str) -> int:
        """The agent update at which ``diffusion`` / ``reward`` / ``actor`` starts: each part
        trains for the last ``<part>_steps_first_epoch`` updates of the first epoch (0, 0, 5000)."""
        return self.first_epoch_updates - self._steps_first_epoch(component)

    def component_steps(self, component: str, epoch: int) -> int:
        """Gradient steps of ``component`` in ``epoch`` (1-based): 10000 / 10000 / 5000, then 400."""
        if not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"epoch must be an integer >= 1, got {epoch!r}")
        return self._steps_first_epoch(component) if epoch == 1 else self.training_steps_per_epoch

    def epoch_updates(self, epoch: int) -> int:
        """Agent updates in ``epoch`` (1-based): :attr:`first_epoch_updates`, then 400."""
        return max(self.component_steps(c, epoch) for c in COMPONENTS)
