"""Small files in a sweep's experiment directory, local or in a bucket (``s3://``, ``gs://``).

``distwm sweep`` saves the resolved sweep as ``<experiment>/sweep.yaml``: ``--resume`` and
``distwm report`` read it back, so both see exactly what the trials ran with.
"""

from __future__ import annotations

from distwm.tune.sweep_config import SweepConfig
from distwm.utils import storage

__all__ = ["SWEEP_FILE", "save_sweep", "load_saved_sweep"]

SWEEP_FILE = "sweep.yaml"


def save_sweep(sweep: SweepConfig, experiment_path: str) -> str:
    path = f"{experiment_path.rstrip('/')}/{SWEEP_FILE}"
    storage.write_text(path, sweep.to_yaml())
    return path


def load_saved_sweep(experiment_path: str) -> SweepConfig:
    """The sweep a results directory was produced by; ``ValueError`` if it is not one."""
    path = f"{str(experiment_path).rstrip('/')}/{SWEEP_FILE}"
    try:
        text = storage.read_text(path)
    except FileNotFoundError:
        raise ValueError(
            f"{experiment_path!r} is not a distwm sweep directory (no {SWEEP_FILE}); give the "
            "directory `distwm sweep` printed, <tune.storage_path>/<name>"
        ) from None
    return SweepConfig.from_yaml(text)
