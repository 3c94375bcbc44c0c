"""Input pipelines: a DataLoader with sensible worker settings, and background prefetching.

* :func:`create_efficient_dataloader`: a shuffling ``DataLoader`` of full batches whose worker
  options are only passed where they apply (``prefetch_factor`` and ``persistent_workers`` need
  worker processes, pinned memory needs CUDA).
* :func:`prefetch_iterator`: any iterator, advanced by a background thread up to
  ``buffer_size`` items ahead of the consumer; the producer's exception is raised in the
  consumer, and stopping early (``break``, ``close()``) stops the thread.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Iterator

__all__ = ["create_efficient_dataloader", "prefetch_iterator", "default_num_workers",
           "MAX_DEFAULT_WORKERS"]

#: the most workers ``num_workers=None`` chooses
MAX_DEFAULT_WORKERS = 8


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_num_workers() -> int:
    """Loader workers for ``num_workers=None``: one CPU left to the training process, at most
    :data:`MAX_DEFAULT_WORKERS` (``0``, loading in the main process, on a single CPU)."""
    return max(0, min(MAX_DEFAULT_WORKERS, _available_cpus() - 1))


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def create_efficient_dataloader(dataset, batch_size: int, num_workers: int | None = None,
                                pin_memory: bool = True, prefetch_factor: int = 2,
                                persistent_workers: bool = True):
    """A ``torch.utils.data.DataLoader`` over ``dataset`` for training.

    Map-style datasets are shuffled; batches are full (``drop_last``, constant shapes), so the
    dataset must hold at least ``batch_size`` items. ``num_workers=None`` picks
    :func:`default_num_workers`. ``prefetch_factor`` (batches each worker loads ahead) and
    ``persistent_workers`` (workers kept between epochs) apply only with ``num_workers > 0``;
    ``pin_memory`` only when CUDA is available (page-locked host memory speeds up copies to
    the GPU and is wasted without one).
    """
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    batch_size = _check_int("batch_size", batch_size, 1)
    workers = default_num_workers() if num_workers is None else _check_int("num_workers", num_workers, 0)
    iterable = isinstance(dataset, IterableDataset)
    if not iterable:
        size = len(dataset)
        if size < batch_size:
            raise ValueError(f"the dataset holds {size} items, fewer than batch_size={batch_size} "
                             "(batches are full: drop_last=True)")
    options: dict[str, Any] = {}
    if workers > 0:
        options["prefetch_factor"] = _check_int("prefetch_factor", prefetch_factor, 1)
        options["persistent_workers"] = bool(persistent_workers)
    return DataLoader(dataset, batch_size=batch_size, shuffle=not iterable, drop_last=True,
                      num_workers=workers, pin_memory=bool(pin_memory) and torch.cuda.is_available(),
                      **options)


class _Failure:
    """The producer's exception, carried through the queue."""

    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()
_POLL_S = 0.1


def _produce(source: Iterator, buffer: queue.Queue, stop: threading.Event) -> None:
    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    try:
        for item in source:
            if not put(item):
                return
    except BaseException as exc:  # handed to the consumer, raised there
        put(_Failure(exc))
        return
    put(_END)


def prefetch_iterator(iterator: Iterator, buffer_size: int = 3):
    """Yield the items of ``iterator`` (any iterable) in order, read ahead by a background
    thread that keeps up to ``buffer_size`` items ready.

    An exception raised by the iterator is re-raised to the consumer at the position where it
    occurred (after the items produced before it). When the consumer stops early (``break``,
    ``close()``, garbage collection), the thread stops at its next item and is joined; an
    iterator blocked inside ``next()`` is left to finish in its daemon thread.
    """
    buffer_size = _check_int("buffer_size", buffer_size, 1)
    source = iter(iterator)
    buffer: queue.Queue = queue.Queue(maxsize=buffer_size)
    stop = threading.Event()
    thread = threading.Thread(target=_produce, args=(source, buffer, stop), daemon=True,
                              name="distwm-prefetch")
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=1.0)
