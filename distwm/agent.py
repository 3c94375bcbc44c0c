"""The protocols that the single-process loop and the Ray runtime both drive.

* :class:`Policy`: acting (runs on CPU inside env workers).
* :class:`Trainable`: learning from named replay samples or dataset batches.
* :class:`Agent` = :class:`Policy` + :class:`Trainable` (Dreamer, PlaNet, IRIS, DIAMOND). A
  dataset-trained model (Genie, I-JEPA, DiT) is a :class:`Trainable` only.

This module imports neither torch nor ray.

Data conventions (DESIGN.md "Data"):

* an observation is a dict of numpy arrays: ``image`` uint8 ``(C, H, W)`` and/or ``state``
  float32 ``(D,)``; batched with a leading env axis ``(N, ...)`` when acting;
* an action is a float32 vector: one-hot for discrete action spaces, in ``[-1, 1]`` for
  continuous ones;
* a replay batch is a dict of numpy arrays shaped ``(B, T, ...)`` with keys ``image`` and/or
  ``state``, ``action``, ``reward``, ``is_first``, ``is_terminal``, ``is_last``. The action
  at index ``t`` is the action that *led to* observation ``t`` (zero at ``is_first``), as
  in DreamerV3's replay format. ``update`` receives ``{sample name: batch}``.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

__all__ = ["Agent", "DataSpec", "NonFiniteLossError", "Policy", "SampleSpec", "Trainable",
           "import_object"]

#: the sample name of an agent that declares one sample
DEFAULT_SAMPLE = "sequences"


class NonFiniteLossError(FloatingPointError):
    """Raised by every family when ``max_nonfinite_updates`` consecutive updates had a
    non-finite loss, gradient or input (each of them was skipped)."""


@dataclass(frozen=True)
class SampleSpec:
    """One named replay sample: ``batch_size`` sequences of ``seq_len`` steps (``seq_len=1``:
    single frames) and its ``share`` of the replay budget (``None``: ``batch_size * seq_len``
    relative to the other samples, i.e. every update carries this sample).

    ``online``: each batch first takes the freshest sequences not trained on yet (every stream's
    newest non-overlapping sequences, each once), the rest uniformly: DreamerV3's online queue
    (its 2024 recipe).

    ``stepids``: each batch also carries ``stepid`` ``(B, T)`` int64, the replay's name of every
    step, which :meth:`Trainable.replay_updates` uses to write entries back (DreamerV3's replay
    context). In the Ray runtime a batch also carries ``shard`` ``(B,)``, where each row came from."""

    name: str
    batch_size: int
    seq_len: int
    share: float | None = None
    online: bool = False
    stepids: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"SampleSpec name must be a non-empty string, got {self.name!r}")
        for what in ("batch_size", "seq_len"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SampleSpec {self.name!r}: {what} must be a positive int, got {value!r}")
        if self.share is not None and not (math.isfinite(self.share) and self.share > 0):
            raise ValueError(f"SampleSpec {self.name!r}: share must be > 0 (or None), got {self.share!r}")

    @property
    def steps(self) -> int:
        """Replayed env steps of one batch of this sample."""
        return self.batch_size * self.seq_len


@dataclass(frozen=True, init=False)
class DataSpec:
    """What an agent replays and how much.

    ``DataSpec(batch_size, seq_len, train_ratio)`` declares one sample named
    ``"sequences"``; ``DataSpec(train_ratio=..., samples=[SampleSpec(...), ...])`` several.

    ``train_ratio`` is replayed env steps per inserted env step (DreamerV3's
    ``train_ratio``), over all samples together. Sample ``i`` takes ``share_i`` of it: it is
    drawn ``frequency(i)`` of the updates (the sample with the most draws per replayed step is
    in every update), and update ``k`` carries the samples :meth:`due` returns.

    ``entries``: per-step arrays the policy stores with every step it acts on, besides the
    observation (``{name: (shape, dtype)}``; see :meth:`Policy.replay_entries`), e.g. Dreamer's
    latent state for its replay context. Steps acted on by something else (random prefill)
    store zeros.
    """

    samples: tuple[SampleSpec, ...]
    train_ratio: float
    entries: tuple[tuple[str, tuple[int, ...], str], ...]

    def __init__(self, batch_size: int | None = None, seq_len: int | None = None,
                 train_ratio: float | None = None, *, samples: Sequence[SampleSpec] | None = None,
                 entries: Mapping[str, tuple[Sequence[int], str]] | None = None):
        if samples is None:
            if batch_size is None or seq_len is None:
                raise ValueError("DataSpec needs batch_size and seq_len, or samples=[SampleSpec, ...]")
            samples = (SampleSpec(DEFAULT_SAMPLE, int(batch_size), int(seq_len)),)
        elif batch_size is not None or seq_len is not None:
            raise ValueError("DataSpec takes batch_size/seq_len or samples, not both")
        samples = tuple(samples)
        if not samples or not all(isinstance(s, SampleSpec) for s in samples):
            raise ValueError(f"DataSpec samples must be a non-empty list of SampleSpec, got {samples!r}")
        names = [s.name for s in samples]
        if len(set(names)) != len(names):
            raise ValueError(f"DataSpec sample names must be unique, got {names}")
        if train_ratio is None or not math.isfinite(float(train_ratio)) or float(train_ratio) < 0:
            raise ValueError(f"DataSpec train_ratio must be a finite number >= 0, got {train_ratio!r}")
        object.__setattr__(self, "samples", samples)
        object.__setattr__(self, "train_ratio", float(train_ratio))
        object.__setattr__(self, "entries", _entries(entries or {}))

    @property
    def entry_specs(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """``{name: (shape, dtype)}`` of :attr:`entries`."""
        return {name: (shape, dtype) for name, shape, dtype in self.entries}

    # -- one-sample shortcuts (Dreamer, PlaNet) --------------------------------------------
    def _only(self) -> SampleSpec:
        if len(self.samples) != 1:
            raise ValueError(f"this DataSpec has {len(self.samples)} samples "
                             f"({', '.join(self.names)}): ask for one by name with sample(name)")
        return self.samples[0]

    @property
    def batch_size(self) -> int:
        return self._only().batch_size

    @property
    def seq_len(self) -> int:
        return self._only().seq_len

    # -- several samples ---------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.samples)

    def sample(self, name: str) -> SampleSpec:
        for s in self.samples:
            if s.name == name:
                return s
        raise ValueError(f"unknown sample {name!r}; this DataSpec has {', '.join(self.names)}")

    @property
    def max_seq_len(self) -> int:
        return max(s.seq_len for s in self.samples)

    def _draws_per_step(self, s: SampleSpec) -> float:
        """Batches of ``s`` per replayed step, before normalisation."""
        if any(x.share is None for x in self.samples):
            return 1.0  # shares follow batch sizes: every update carries every sample
        return s.share / s.steps

    def frequency(self, name: str) -> float:
        """Fraction of updates that carry sample ``name`` (in ``(0, 1]``)."""
        rates = {s.name: self._draws_per_step(s) for s in self.samples}
        return rates[self.sample(name).name] / max(rates.values())

    def due(self, update_index: int) -> tuple[str, ...]:
        """Names of the samples update number ``update_index`` (0-based) carries."""
        k = int(update_index)
        out = []
        for s in self.samples:
            f = self.frequency(s.name)
            if f >= 1.0 or math.floor((k + 1) * f + 1e-9) > math.floor(k * f + 1e-9):
                out.append(s.name)
        return tuple(out)

    @property
    def steps_per_update(self) -> float:
        """Replayed env steps of an average update."""
        return sum(self.frequency(s.name) * s.steps for s in self.samples)

    @property
    def updates_per_env_step(self) -> float:
        return self.train_ratio / self.steps_per_update


@runtime_checkable
class Policy(Protocol):
    """Acting: runs on CPU inside env workers, with weights from a :class:`Trainable`."""

    def initial_state(self, num_envs: int) -> Any: ...

    def act(self, obs: Mapping[str, Any], state: Any, explore: bool) -> tuple[Any, Any]:
        """Return ``(actions (N, A) float32 numpy, new_state)``.

        ``obs`` carries ``is_first`` (N,) bool: the policy resets the recurrent state of the
        envs where it is set.
        """

    def set_weights(self, weights: Mapping[str, Any]) -> None: ...

    # Optional: ``replay_entries(state) -> {name: (N, ...) numpy}``, the ``DataSpec.entries``
    # to store with the steps ``act`` just saw (``state``: what it returned).


@runtime_checkable
class Trainable(Protocol):
    """Learning. Construction of an RL agent: ``Class.from_config(config, observation_space,
    action_space, device="cpu")``. Optional: ``report(batch) -> {"scalars": {...},
    "images": {name: (H, W, 3) uint8}, "videos": {name: (T, H, W, 3) uint8}}``."""

    def data_spec(self) -> DataSpec: ...

    def update(self, batches: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        """One learning step on ``{sample name: batch}`` (the samples ``data_spec().due(k)``
        names for this update)."""

    def get_weights(self) -> dict[str, Any]:
        """CPU-only state dict of what acting needs."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: networks, optimizers, counters, ``format`` and
        ``architecture`` (see :mod:`distwm.utils.checkpoint`)."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    # Optional: ``replay_updates() -> {sample name: {"stepid": (B, T), name: (B, T, ...)}}``,
    # entries the last ``update`` asks replay to overwrite (steps no longer held are skipped).


def _entries(entries: Mapping[str, Any]) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    out = []
    for name, spec in sorted(entries.items()):
        try:
            shape, dtype = spec
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise ValueError(f"DataSpec entries[{name!r}] must be (shape, dtype), got {spec!r}") from None
        if not isinstance(name, str) or not name or not isinstance(dtype, str):
            raise ValueError(f"DataSpec entries: bad entry {name!r}: {spec!r} (name str, dtype str)")
        out.append((name, shape, dtype))
    return tuple(out)


@runtime_checkable
class Agent(Policy, Trainable, Protocol):
    """An RL agent: a :class:`Policy` and a :class:`Trainable`."""


def import_object(path: str) -> Any:
    """Import ``"package.module:attr"`` (or ``"package.module.attr"``)."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"Bad import path {path!r}: expected 'package.module:attribute'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ImportError(f"{module_name!r} has no attribute {attr!r} (from {path!r})") from exc
