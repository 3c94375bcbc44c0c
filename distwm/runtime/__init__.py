"""The Ray actor-learner runtime: env workers, replay shards, a learner, and the driver.

``distwm.runtime.run(config)`` trains any agent that implements ``distwm.agent.Agent``.
Importing this package imports neither torch nor ray; the actors and the driver import them
when a run starts.
"""

from __future__ import annotations

from distwm._lazy import lazy_exports

__all__ = ["run", "Driver", "RunResult", "RuntimeConfig", "RunConfig", "RateLimiter",
           "ReplayShard", "EnvWorker", "Evaluator", "Learner", "EnvRunner"]

_LAZY = {
    "run": "distwm.runtime.driver",
    "Driver": "distwm.runtime.driver",
    "RunResult": "distwm.runtime.driver",
    "RuntimeConfig": "distwm.configs.runtime_config",
    "RunConfig": "distwm.configs.runtime_config",
    "RateLimiter": "distwm.runtime.rate_limiter",
    "ReplayShard": "distwm.runtime.replay_shard",
    "EnvWorker": "distwm.runtime.env_worker",
    "Evaluator": "distwm.runtime.env_worker",
    "Learner": "distwm.runtime.learner",
    "EnvRunner": "distwm.loop.env_loop",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
