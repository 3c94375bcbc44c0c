"""The one training loop and the arithmetic the runtime shares with it (no Ray here).

* :mod:`distwm.loop.schedule`: replay-ratio budget and cadences (pure Python);
* :mod:`distwm.loop.env_loop`: :class:`EnvRunner`, the one env-stepping loop;
* :mod:`distwm.loop.train_loop`: :class:`TrainLoop`, the single-process loop.
"""

from distwm._lazy import lazy_exports

_LAZY = {
    "UpdateBudget": "distwm.loop.schedule",
    "Cadence": "distwm.loop.schedule",
    "replay_ratio": "distwm.loop.schedule",
    "EnvRunner": "distwm.loop.env_loop",
    "RandomActor": "distwm.loop.env_loop",
    "make_runner": "distwm.loop.env_loop",
    "TrainLoop": "distwm.loop.train_loop",
    "Collected": "distwm.loop.train_loop",
    "LoopResult": "distwm.loop.train_loop",
    "StepReplay": "distwm.loop.adapters",
    "RunnerCollector": "distwm.loop.adapters",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
