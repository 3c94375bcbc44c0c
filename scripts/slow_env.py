"""A slow simulator for the scaling benchmark (``scripts/bench_scaling.py``).

``SlowSignEnv`` is the runtime tests' ``SignEnv`` (``tests/runtime_agent.py``) whose every
``reset`` and ``step`` takes ``step_ms`` milliseconds of wall time without using the CPU
(``time.sleep``), as a physics simulator or a game engine behind a socket does: the time an env
worker spends in ``env.step`` is what more workers hide.

``SlowSignConfig`` is ``TinyAgentConfig`` with ``step_ms``; ``make_slow_env`` is its env factory
(``runtime.env_factory = "slow_env:make_slow_env"``). Ray workers import this module and
``runtime_agent`` by name, so ``scripts/`` and ``tests/`` go on their ``PYTHONPATH``
(``ray.init(runtime_env={"env_vars": {"PYTHONPATH": ...}})``, as the benchmark does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from runtime_agent import SignEnv, TinyAgentConfig

__all__ = ["SlowSignEnv", "SlowSignConfig", "make_slow_env"]


class SlowSignEnv(SignEnv):
    """``SignEnv`` whose ``reset`` and ``step`` each sleep ``step_ms`` milliseconds."""

    def __init__(self, seed: int = 0, step_ms: float = 15.0, **kwargs: Any):
        super().__init__(seed=seed, **kwargs)
        self.step_seconds = float(step_ms) / 1000.0

    def reset(self, *, seed: int | None = None, options=None):
        time.sleep(self.step_seconds)
        return super().reset(seed=seed, options=options)

    def step(self, action):
        time.sleep(self.step_seconds)
        return super().step(action)


@dataclass
class SlowSignConfig(TinyAgentConfig):
    """The test agent (``TinyAgent``) on ``SlowSignEnv``."""

    AGENT_CLASS: ClassVar[str] = "runtime_agent:TinyAgent"

    env: str = "slow-sign"
    step_ms: float = 15.0


def make_slow_env(config: Any, seed: int) -> SlowSignEnv:
    return SlowSignEnv(seed=seed, step_ms=getattr(config, "step_ms", 15.0),
                       time_limit=config.time_limit, p_terminate=config.p_terminate)
