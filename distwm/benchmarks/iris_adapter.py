"""IRIS's benchmark adapter: an :class:`~distwm.models.iris.core.IRISCore` on IRIS's evaluation
envs (Atari 100k: 1 no-op start, whole games), from a runtime or ``IRISTrainer`` checkpoint."""

from __future__ import annotations

from typing import Any, Mapping

from distwm.benchmarks.adapters import AgentAdapter, env_id_of

__all__ = ["IRISAdapter"]


class IRISAdapter(AgentAdapter):
    """``IRISAdapter(env_spec, seed, config={...IRISConfig fields...})``: evaluates at the
    config's ``eval_temperature`` (IRIS's test collector samples at 0.5)."""

    name = "iris"

    def config(self):
        import distwm

        env_id = env_id_of(self.env_spec)
        if env_id is None:
            raise ValueError("IRISAdapter needs an env_spec naming a game, e.g. 'ALE/Breakout-v5'")
        # the adapter's game and seed win over a run's config (which names the game it trained on)
        fields = {**dict(self.kwargs.get("config", {})), "env": env_id, "seed": self.seed}
        return distwm.create_config("iris", **fields)

    def make_env(self):
        from distwm.envs.factory import make_env_from_config

        return make_env_from_config(self.config().for_evaluation(), self.seed)

    def build_agent(self, env) -> Any:
        from distwm.models.iris.core import IRISCore

        return IRISCore.from_config(self.config(), env.observation_space, env.action_space, "cpu")

    def load_state(self, path: str) -> Mapping[str, Any]:
        from distwm.utils.checkpoint import agent_state

        return agent_state(super().load_state(path))
