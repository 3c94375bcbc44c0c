"""Benchmark adapters for the agents trained part by part (IRIS, DIAMOND): the family's
protocol class on its evaluation envs (Atari 100k: whole games), from a runtime checkpoint or
the family's single-process trainer's."""

from __future__ import annotations

from typing import Any, Mapping

from distwm.benchmarks.adapters import AgentAdapter, env_id_of

__all__ = ["DiamondAdapter", "IRISAdapter", "ScheduledPartsAdapter"]


class ScheduledPartsAdapter(AgentAdapter):
    """``Adapter(env_spec, seed, config={...the family's config fields...})``: ``model`` names
    the family in the registry, ``core_path`` its protocol class."""

    model = ""
    core_path = ""

    def config(self):
        import distwm

        env_id = env_id_of(self.env_spec)
        if env_id is None:
            raise ValueError(f"{type(self).__name__} needs an env_spec naming a game, e.g. 'ALE/Breakout-v5'")
        # the adapter's game and seed win over a run's config (which names the game it trained on)
        fields = {**dict(self.kwargs.get("config", {})), "env": env_id, "seed": self.seed}
        return distwm.create_config(self.model, **fields)

    def make_env(self):
        from distwm.envs.factory import make_env_from_config

        return make_env_from_config(self.config().for_evaluation(), self.seed)

    def build_agent(self, env) -> Any:
        from distwm.agent import import_object

        core = import_object(self.core_path)
        return core.from_config(self.config(), env.observation_space, env.action_space, "cpu")

    def load_state(self, path: str) -> Mapping[str, Any]:
        from distwm.utils.checkpoint import agent_state

        return agent_state(super().load_state(path))


class IRISAdapter(ScheduledPartsAdapter):
    """IRIS: evaluates at the config's ``eval_temperature`` (IRIS's test collector samples at 0.5)."""

    name = model = "iris"
    core_path = "distwm.models.iris.core:IRISCore"


class DiamondAdapter(ScheduledPartsAdapter):
    """DIAMOND: evaluates sampling the policy with ``eval_epsilon`` (0, the reference's test
    collector) on whole games with raw rewards."""

    name = model = "diamond"
    core_path = "distwm.models.diamond.core:DiamondCore"
