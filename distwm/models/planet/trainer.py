"""PlaNet's single-process API: collect episodes, train the RSSM, plan with CEM, evaluate.

:class:`Planet` drives the same :class:`~distwm.models.planet.core.PlanetCore` (model,
optimiser, planner) that the Ray runtime trains, through the one training loop
(:class:`distwm.loop.TrainLoop`), with an episode :class:`~distwm.memory.planet_memory.Memory`
and a :class:`~distwm.controller.rollout_generator.RolloutGenerator` in process.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from typing import Any, Callable, Mapping

import torch
from tqdm.auto import tqdm

from distwm.configs.planet_config import PlanetConfig
from distwm.controller.rollout_generator import RolloutGenerator
from distwm.loop.train_loop import TrainLoop
from distwm.memory.planet_memory import Episode, Memory
from distwm.models.planet.checkpoint import CHECKPOINT_FORMAT
from distwm.models.planet.core import PlanetCore
from distwm.models.planet.env import PlanetEnv, resolve_device
from distwm.models.planet.episodes import EpisodeCollector, EpisodeReplay, EpochHook
from distwm.models.planet.networks import RecurrentStateSpaceModel
from distwm.utils.checkpoint import restore_file, save_file

__all__ = ["Planet", "RecurrentStateSpaceModel", "SCHEDULER_TYPES", "make_scheduler"]

#: learning-rate schedules of :meth:`Planet.train` (``None`` for a constant rate)
SCHEDULER_TYPES = ("step", "cosine", "exponential", "plateau")

_POLICY_KEYS = ("planning_horizon", "num_candidates", "num_iterations", "top_candidates", "action_noise")


def make_scheduler(optimizer, scheduler_type: str | None, scheduler_kwargs: Mapping[str, Any] | None, epochs: int):
    """A per-epoch learning-rate scheduler, or ``None`` for ``scheduler_type`` None/"none".

    Defaults: ``step`` halves the rate every third of the run, ``cosine`` anneals over
    ``epochs``, ``exponential`` decays by 0.99 per epoch, ``plateau`` halves it after 5 epochs
    without a lower training loss. ``scheduler_kwargs`` override them.
    """
    from torch.optim import lr_scheduler

    if scheduler_type is None or scheduler_type == "none":
        return None
    defaults: dict[str, dict[str, Any]] = {
        "step": {"step_size": max(1, epochs // 3), "gamma": 0.5},
        "cosine": {"T_max": max(1, epochs)},
        "exponential": {"gamma": 0.99},
        "plateau": {"mode": "min", "factor": 0.5, "patience": 5},
    }
    classes = {"step": lr_scheduler.StepLR, "cosine": lr_scheduler.CosineAnnealingLR,
               "exponential": lr_scheduler.ExponentialLR, "plateau": lr_scheduler.ReduceLROnPlateau}
    if scheduler_type not in classes:
        raise ValueError(
            f"Unknown scheduler_type {scheduler_type!r}; valid: {', '.join(SCHEDULER_TYPES)} or None"
        )
    kwargs = {**defaults[scheduler_type], **dict(scheduler_kwargs or {})}
    try:
        return classes[scheduler_type](optimizer, **kwargs)
    except TypeError as exc:
        raise ValueError(f"Bad scheduler_kwargs for {scheduler_type!r}: {exc}") from exc


class Planet:
    """High-level Planet wrapper: the seed's single-process PlaNet over a :class:`PlanetCore`.

    Usage example::

        from distwm.models.planet import Planet
        p = Planet(env="cartpole-swingup", bit_depth=5)
        p.train(epochs=50)

    Args:
        env: an env id (built through :func:`distwm.envs.make_env_from_config` with pixel
            observations the first time it is needed), a Gymnasium env (dict observations
            with ``image``/``state``, or a plain array), an env with PlaNet's torch interface
            (``action_size``, ``sample_random_action``, ...) or a :class:`PlanetConfig`, whose
            fields then replace the other arguments.
        bit_depth: bits per image channel.
        device: torch device of the model (``None``: CUDA when available).
        state_size, latent_size, embedding_size: RSSM sizes.
        memory_size: episodes kept in replay.
        policy_cfg: planner settings, a dict with any of ``planning_horizon``,
            ``num_candidates``, ``num_iterations``, ``top_candidates``, ``action_noise``.
        headless: when True, evaluation records metrics only; otherwise it also writes an
            MP4 of observations beside reconstructions (or rendered frames) to ``results_dir``.
        max_episode_steps: cap on episode length.
        action_repeats: action repeat of an env built from an id.
        results_dir: where :meth:`train` writes metrics, videos and checkpoints (default
            ``<log_dir>/<exp_name>``); created when training starts.
    """

    def __init__(
        self,
        env: Any,
        bit_depth: int = 5,
        device: Any = None,
        state_size: int = 200,
        latent_size: int = 30,
        embedding_size: int = 1024,
        memory_size: int = 100,
        policy_cfg: Mapping[str, Any] | None = None,
        headless: bool = False,
        max_episode_steps: int | None = None,
        action_repeats: int = 1,
        results_dir: str | None = None,
    ):
        if isinstance(env, PlanetConfig):
            config, self._env_source = env, None
        else:
            env_id = env if isinstance(env, str) else getattr(getattr(env, "spec", None), "id", None)
            config = PlanetConfig(
                env=env_id or type(env).__name__, obs_type="pixels", bit_depth=bit_depth,
                state_size=state_size, latent_size=latent_size, embedding_size=embedding_size,
                memory_size=memory_size, action_repeat=action_repeats,
                device="auto" if device is None else str(device),
            )
            self._env_source = None if isinstance(env, str) else env
        if policy_cfg:
            unknown = sorted(set(policy_cfg) - set(_POLICY_KEYS))
            if unknown:
                raise ValueError(f"Unknown policy_cfg key(s) {unknown}; valid keys: {', '.join(_POLICY_KEYS)}")
            config = config.replace(**dict(policy_cfg))
        self.config = config
        self.bit_depth = config.bit_depth
        self.device = resolve_device(config.device)
        self.headless = headless
        self.max_episode_steps = max_episode_steps
        self.results_dir = results_dir or os.path.join(config.log_dir, config.exp_name)
        self.memory = Memory(config.memory_size)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self._env: Any = None
        self._agent: PlanetCore | None = None
        self._rollout_gen: RolloutGenerator | None = None

    # -- lazily built pieces (constructing a Planet builds no env) ---------------------------
    @property
    def env(self):
        """The env in PlaNet's torch interface (built on first use)."""
        if self._env is None:
            source = self._env_source
            if source is None:
                from distwm.envs import make_env_from_config

                source = make_env_from_config(self.config, self.config.seed)
            if hasattr(source, "sample_random_action") and hasattr(source, "action_size"):
                self._env = source
            else:
                self._env = PlanetEnv(source, self.bit_depth, device=self.device,
                                      max_episode_steps=self.max_episode_steps)
        return self._env

    @env.setter
    def env(self, value) -> None:
        self._env, self._rollout_gen = value, None

    @property
    def agent(self) -> PlanetCore:
        if self._agent is None:
            env = self.env
            if isinstance(env, PlanetEnv):
                self._agent = PlanetCore(
                    self.config, env.observation_size, env.action_size, self.device,
                    obs_key=env.obs_key or "state", discrete=env.discrete,
                    action_low=env.action_low, action_high=env.action_high,
                )
            else:  # a torch-interface env: continuous actions in [-1, 1]
                self._agent = PlanetCore(self.config, tuple(env.observation_size), int(env.action_size),
                                          self.device)
        return self._agent

    @property
    def rssm(self) -> RecurrentStateSpaceModel:
        return self.agent.rssm

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.agent.optimizer

    @property
    def policy(self):
        return self.agent.policy

    @property
    def rollout_gen(self) -> RolloutGenerator:
        if self._rollout_gen is None:
            env = self.env
            episode_gen = (functools.partial(Episode, postprocess_fn=env.to_storage)
                           if hasattr(env, "to_storage") else Episode)
            self._rollout_gen = RolloutGenerator(
                env, self.device, policy=self.policy, max_episode_steps=self.max_episode_steps,
                episode_gen=episode_gen, name="planet",
            )
        return self._rollout_gen

    @rollout_gen.setter
    def rollout_gen(self, value) -> None:
        self._rollout_gen = value

    # -- data ---------------------------------------------------------------------------------
    def warmup(self, n_episodes: int = 1, random_policy: bool = True) -> list[Episode]:
        """Collect n_episodes of rollouts into memory (used as warmup)."""
        episodes = self.rollout_gen.rollout_n(n=n_episodes, random_policy=random_policy)
        self.memory.append(episodes)
        return episodes

    # -- training -----------------------------------------------------------------------------
    def train(
        self,
        epochs: int = 100,
        steps_per_epoch: int = 150,
        batch_size: int = 32,
        H: int = 50,
        beta: float = 1.0,
        save_every: int = 25,
        record_grads: bool = False,
        results_dir: str | None = None,
        scheduler_type: str | None = "step",
        scheduler_kwargs: Mapping[str, Any] | None = None,
        callback: Callable[[dict[str, Any]], bool | None] | None = None,
    ) -> list[dict[str, Any]]:
        """High-level training loop, run by the one training loop :class:`distwm.loop.TrainLoop`.

        Each epoch: one episode with the planner (exploration noise) into memory, then
        ``steps_per_epoch`` updates of :meth:`PlanetCore.update` on ``batch_size`` sequences of
        ``H`` transitions (KL weight ``beta``), then a scheduler step. Every ``save_every``
        epochs (and at the end) an evaluation episode and a checkpoint. Memory is seeded with
        ``config.seed_episodes`` random episodes (at least one) when empty. Metrics of every
        epoch go to ``results_dir/metrics.jsonl`` and are returned (with those of earlier calls).

        Args:
            scheduler_type: ``"step"``, ``"cosine"``, ``"exponential"``, ``"plateau"`` or None.
            scheduler_kwargs: arguments of the scheduler, overriding the defaults of
                :func:`make_scheduler`.
            callback: called with each epoch's metrics; returning True stops training (a
                final evaluation and checkpoint follow).
        """
        for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch),
                            ("batch_size", batch_size), ("H", H), ("save_every", save_every)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"Planet.train: {name} must be a positive int, got {value!r}")
        scheduler = make_scheduler(self.optimizer, scheduler_type, scheduler_kwargs, epochs)
        out_dir = results_dir or self.results_dir
        os.makedirs(out_dir, exist_ok=True)
        if len(self.memory) == 0:
            self.warmup(max(1, self.config.seed_episodes), random_policy=True)
        core = self.agent
        core.kl_beta, core.record_grads = float(beta), bool(record_grads)
        collector = EpisodeCollector(self.rollout_gen, self.config.action_repeat)
        replay = EpisodeReplay(self.memory, batch_size, H, core.obs_key)
        start, last_epoch = time.time(), self.epoch + epochs
        bar = tqdm(total=epochs, desc="planet", disable=None)

        def end_epoch(metrics: dict[str, float]) -> bool:
            row: dict[str, Any] = {"epoch": self.epoch, **metrics}
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(row["loss"])
            elif scheduler is not None:
                scheduler.step()
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            row.update(train_return=collector.last_episode.info["return"], env_steps=self.memory.size,
                       elapsed_s=time.time() - start)
            self.epoch += 1
            stop = bool(callback(dict(row))) if callback is not None else False
            if self.epoch % save_every == 0 or self.epoch == last_epoch or stop:
                row.update({f"eval_{k}": v for k, v in self.evaluate(1, out_dir).items()
                            if isinstance(v, float)})
                row.update(self._log_report(replay, out_dir))
                self.save_checkpoint(os.path.join(out_dir, f"checkpoint_{self.epoch:05d}.pt"))
            self.history.append(row)
            with open(os.path.join(out_dir, "metrics.jsonl"), "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.2f}", ret=f"{row['train_return']:.1f}")
            return stop or self.epoch >= last_epoch

        # epochs, not env steps, end the run: the step budget is unbounded
        loop = TrainLoop(core, collector, replay,
                         total_steps=sys.maxsize, updates_per_collect=steps_per_epoch,
                         on_update=EpochHook(steps_per_epoch, end_epoch), progress=False, desc="planet")
        try:
            loop.run()
        finally:
            bar.close()
        return self.history

    def _log_report(self, replay, out_dir: str) -> dict[str, float]:
        """The open-loop predictions on a replayed batch: ``media/openloop_<epoch>.png`` (pixel
        observations) and the ``openloop/*`` errors for the epoch's metrics row."""
        from distwm.utils.media import save_png

        batch = replay.sample()
        steps = batch["is_first"].shape[1]
        report = self.agent.report(batch, context=max(1, min(5, steps - 1)))
        for name, image in report["images"].items():
            save_png(image, os.path.join(out_dir, "media", f"{name}_{self.epoch:05d}.png"))
        return dict(report["scalars"])

    def evaluate(self, n_episodes: int = 1, results_dir: str | None = None) -> dict[str, Any]:
        """Run ``n_episodes`` without exploration noise; returns averaged metrics (``return``,
        ``predicted_return``, ``reward_mse``, ``reconstruction_mse`` for images). Unless
        ``headless``, the frames go to ``<results_dir>/eval_<epoch>.mp4``."""
        _, frames, metrics = self.rollout_gen.rollout_eval_n(n_episodes)
        if not self.headless and len(frames):
            from distwm.utils.utils import write_video

            out_dir = results_dir or self.results_dir
            write_video(frames, os.path.join(out_dir, f"eval_{self.epoch:05d}.mp4"), fps=20)
        return metrics

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, path: str) -> str:
        """The core's state (:meth:`PlanetCore.state_dict`, the one checkpoint format), the epoch
        and the config, in a file ``torch.load(weights_only=True)`` reads."""
        return save_file({"agent": self.agent.state_dict(), "epoch": self.epoch,
                          "config": self.config.to_dict()}, path)

    def load_checkpoint(self, path: str) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (or a runtime ``learner.pt``);
        an architecture that differs from this Planet's raises ``ValueError`` naming the fields."""
        state = restore_file(path, CHECKPOINT_FORMAT, "Planet", self.agent.load_state_dict)
        self.epoch = int(state.get("epoch", 0))
