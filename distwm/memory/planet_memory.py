"""Episode-based replay for PlaNet and RSSM training (pure numpy).

An :class:`Episode` records one trajectory; :class:`Memory` keeps the most recent episodes and
samples contiguous sub-sequences of them.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterable

import numpy as np

__all__ = ["Episode", "Memory", "MAX_SAMPLE_BYTES"]

#: ``Memory.sample`` refuses batches whose arrays would exceed this many bytes.
MAX_SAMPLE_BYTES = 200 * 1024 * 1024


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class Episode:
    """Records the agent's interaction with the environment for a single episode.

    Stores observations, actions, rewards, and terminal flags during a single trajectory. At
    termination, converts all lists to numpy arrays for efficient batch processing.

    Attributes:
        x: observations (``T + 1`` of them after :meth:`terminate`).
        u: actions taken, ``(T, action_dim)`` float32.
        r: rewards received, ``(T,)`` float32.
        t: terminal flags, ``(T,)`` float32 (0.0 = continue, 1.0 = terminal).
        info: additional episode metadata.

    Args:
        postprocess_fn: applied to every observation before it is stored (for instance
            ``lambda o: postprocess_img(o, bit_depth)`` to store images as uint8). Default:
            identity.

    Example::

        episode = Episode()
        episode.append(obs, action, reward, False)
        episode.append(obs, action, reward, True)
        episode.terminate(final_obs)
        print(episode.x.shape)  # now a numpy array
    """

    def __init__(self, postprocess_fn: Callable[[Any], Any] | None = None):
        self.postprocess_fn = postprocess_fn
        self.x: Any = []
        self.u: Any = []
        self.r: Any = []
        self.t: Any = []
        self.info: dict[str, Any] = {}
        self.terminated = False

    @property
    def size(self) -> int:
        """Number of transitions (actions) recorded."""
        return len(self.u)

    def _observation(self, obs: Any) -> np.ndarray:
        return _to_numpy(obs if self.postprocess_fn is None else self.postprocess_fn(obs))

    def append(self, obs, act, reward, terminal) -> None:
        """Record ``obs`` and the ``act`` taken in it, with the ``reward`` and ``terminal`` flag
        that followed."""
        if self.terminated:
            raise RuntimeError("Episode.append after terminate(): start a new Episode")
        self.x.append(self._observation(obs))
        self.u.append(_to_numpy(act).astype(np.float32).reshape(-1))
        self.r.append(float(_to_numpy(reward).reshape(())))
        self.t.append(float(bool(_to_numpy(terminal).reshape(()))))

    def terminate(self, obs) -> None:
        """Record the final observation and convert everything to numpy arrays."""
        if self.terminated:
            raise RuntimeError("Episode.terminate called twice")
        self.x.append(self._observation(obs))
        self.x = np.stack(self.x)
        action_dim = self.u[0].shape[0] if self.u else 0
        self.u = np.stack(self.u) if self.u else np.zeros((0, action_dim), np.float32)
        self.r = np.asarray(self.r, dtype=np.float32)
        self.t = np.asarray(self.t, dtype=np.float32)
        self.terminated = True
        self.postprocess_fn = None  # not needed any more; keeps the episode picklable


class Memory(deque):
    """Episode-based replay memory for PlaNet/RSSM training.

    Stores episodes as variable-length trajectories and samples contiguous sub-sequences for
    training sequence models. The oldest episodes are evicted once ``size`` episodes are stored.

    Features:
        * stores complete episodes;
        * samples contiguous sub-sequences for sequence models;
        * batch-first or time-first (``time_first=True``) layout;
        * refuses samples that would exceed :data:`MAX_SAMPLE_BYTES` (200 MiB).

    Args:
        size: maximum number of episodes; ``None`` for no limit.

    Attributes:
        episodes: the stored episodes (the memory itself).
        eps_lengths: number of transitions of each stored episode.
        size: total number of transitions across all episodes (a property).

    Example::

        memory = Memory(size=100)
        memory.append([episode1, episode2])
        obs, actions, rewards, terminals, lengths = memory.sample(batch_size=32, tracelen=50)
    """

    def __init__(self, size: int | None = None):
        if size is not None and (not isinstance(size, int) or size <= 0):
            raise ValueError(f"Memory size must be a positive int or None, got {size!r}")
        super().__init__(maxlen=size)
        self.eps_lengths: deque[int] = deque(maxlen=size)

    def __reduce__(self):
        return (type(self), (self.maxlen,), {"episodes": list(self)})

    def __setstate__(self, state: dict) -> None:
        self.append(state["episodes"])

    @property
    def episodes(self) -> "Memory":
        return self

    @property
    def size(self) -> int:
        return int(sum(self.eps_lengths))

    def append(self, episodes: Episode | Iterable[Episode]) -> None:  # type: ignore[override]
        """Store one terminated :class:`Episode` or a list of them."""
        items = [episodes] if isinstance(episodes, Episode) else list(episodes)
        for episode in items:
            if not isinstance(episode, Episode):
                raise TypeError(f"Memory stores Episode objects, got {type(episode).__name__}")
            if not episode.terminated:
                raise ValueError("Episode must be terminated (Episode.terminate(obs)) before storing")
            super().append(episode)
            self.eps_lengths.append(episode.size)

    def clear(self) -> None:
        super().clear()
        self.eps_lengths.clear()

    def sample(self, batch_size: int, tracelen: int = 1, time_first: bool = False):
        """Sample random sub-sequences from stored episodes.

        Picks episodes uniformly and a uniform start inside each, so that ``tracelen``
        transitions fit. An episode shorter than ``tracelen`` contributes all its transitions,
        zero-padded at the end.

        Returns:
            ``(observations, actions, rewards, terminals, lengths)`` as numpy arrays:
            observations ``(batch, tracelen + 1, *obs_shape)``, actions
            ``(batch, tracelen, action_dim)``, rewards and terminals ``(batch, tracelen)``
            (time axis first with ``time_first=True``) and lengths ``(batch,)``: the number of
            valid transitions of each sample (``tracelen`` unless its episode is shorter).

        Raises:
            ValueError: bad arguments, an empty memory, or no episode with a transition.
            MemoryError: the batch would exceed :data:`MAX_SAMPLE_BYTES`.
        """
        for name, value in (("batch_size", batch_size), ("tracelen", tracelen)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"Memory.sample: {name} must be a positive int, got {value!r}")
        if len(self) == 0:
            raise ValueError("Memory.sample: the memory is empty; append episodes first")
        eligible = [i for i, n in enumerate(self.eps_lengths) if n >= 1]
        if not eligible:
            raise ValueError("Memory.sample: no stored episode has at least one transition")
        first = self[eligible[0]]
        obs_shape, obs_dtype = first.x.shape[1:], first.x.dtype
        action_dim = first.u.shape[1]
        step_bytes = int(np.prod(obs_shape, dtype=np.int64)) * first.x.itemsize + 4 * (action_dim + 2)
        estimate = batch_size * (tracelen + 1) * step_bytes
        if estimate > MAX_SAMPLE_BYTES:
            raise MemoryError(
                f"Memory.sample(batch_size={batch_size}, tracelen={tracelen}) would need "
                f"{estimate / 2**20:.0f} MiB (limit {MAX_SAMPLE_BYTES / 2**20:.0f} MiB); "
                "sample fewer or shorter sequences"
            )
        obs = np.zeros((batch_size, tracelen + 1, *obs_shape), dtype=obs_dtype)
        actions = np.zeros((batch_size, tracelen, action_dim), dtype=np.float32)
        rewards = np.zeros((batch_size, tracelen), dtype=np.float32)
        terminals = np.zeros((batch_size, tracelen), dtype=np.float32)
        lengths = np.zeros(batch_size, dtype=np.int64)
        rng = np.random
        for b, index in enumerate(rng.choice(eligible, size=batch_size)):
            episode = self[index]
            n = min(tracelen, episode.size)
            start = rng.randint(0, episode.size - n + 1)
            obs[b, : n + 1] = episode.x[start : start + n + 1]
            actions[b, :n] = episode.u[start : start + n]
            rewards[b, :n] = episode.r[start : start + n]
            terminals[b, :n] = episode.t[start : start + n]
            lengths[b] = n
        if time_first:
            obs, actions = obs.swapaxes(0, 1), actions.swapaxes(0, 1)
            rewards, terminals = rewards.swapaxes(0, 1), terminals.swapaxes(0, 1)
        return obs, actions, rewards, terminals, lengths
