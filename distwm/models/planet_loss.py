"""Re-exports :mod:`distwm.models.planet.losses` (PlaNet's bound and its one optimisation step)."""

from distwm.models.planet.losses import (apply_step, memory_batch, memory_sequences, optimizer_step, planet_loss,
                                         prepare_observation, time_major_batch, train_on_memory, train_step)

__all__ = ["prepare_observation", "planet_loss", "optimizer_step", "apply_step", "train_step", "time_major_batch",
           "memory_sequences", "memory_batch", "train_on_memory"]
