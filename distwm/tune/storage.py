"""Small files in a sweep's experiment directory, local or in a bucket (``s3://``, ``gs://``).

``distwm sweep`` saves the resolved sweep as ``<experiment>/sweep.yaml``: ``--resume`` and
``distwm report`` read it back, so both see exactly what the trials ran with.
"""

from __future__ import annotations

import os

from distwm.tune.sweep_config import SweepConfig

__all__ = ["SWEEP_FILE", "write_text", "read_text", "save_sweep", "load_saved_sweep"]

SWEEP_FILE = "sweep.yaml"


def _fs_and_path(path: str):
    import pyarrow.fs

    if "://" in path:
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def write_text(path: str, text: str) -> None:
    fs, fs_path = _fs_and_path(path)
    fs.create_dir(fs_path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(fs_path) as f:
        f.write(text.encode("utf-8"))


def read_text(path: str) -> str:
    import pyarrow.fs

    fs, fs_path = _fs_and_path(path)
    if fs.get_file_info(fs_path).type != pyarrow.fs.FileType.File:
        raise FileNotFoundError(path)
    with fs.open_input_stream(fs_path) as f:
        return f.readall().decode("utf-8")


def save_sweep(sweep: SweepConfig, experiment_path: str) -> str:
    path = f"{experiment_path.rstrip('/')}/{SWEEP_FILE}"
    write_text(path, sweep.to_yaml())
    return path


def load_saved_sweep(experiment_path: str) -> SweepConfig:
    """The sweep a results directory was produced by; ``ValueError`` if it is not one."""
    path = f"{str(experiment_path).rstrip('/')}/{SWEEP_FILE}"
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise ValueError(
            f"{experiment_path!r} is not a distwm sweep directory (no {SWEEP_FILE}); give the "
            "directory `distwm sweep` printed, <tune.storage_path>/<name>"
        ) from None
    return SweepConfig.from_yaml(text)
