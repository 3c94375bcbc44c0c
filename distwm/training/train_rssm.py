"""Train a recurrent state-space model on replayed episodes, without a planner.

Works with PlaNet's :class:`~distwm.models.planet.networks.RecurrentStateSpaceModel` and with any
:class:`~distwm.models.modular_rssm.ModularRSSM` (encoder/decoder/backbone ablations). Both
are trained on the same bound: observation and reward likelihoods plus a KL from posterior
to prior clipped below at ``free_nats``.

Each update is :class:`RSSMLearner`'s (a one-sample :class:`~distwm.agent.Trainable`): the
phase function :func:`train_rssm` and the script :func:`main`, which runs it in the one
training loop (:class:`distwm.loop.TrainLoop`), share it.

``python -m distwm.training.train_rssm --env Pendulum-v1 --model modular --backbone lstm``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.distributions import kl_divergence

from distwm.agent import DEFAULT_SAMPLE, DataSpec
from distwm.models.modular_rssm import ModularRSSM
from distwm.models.planet.episodes import EpisodeReplay, mean_update_metrics
from distwm.models.planet.losses import masked_mean, apply_step, memory_batch, time_major_batch, train_step
from distwm.utils.results_media import save_frames

__all__ = ["modular_rssm_loss", "RSSMLearner", "train_rssm", "evaluate", "save_frames", "main", "build_parser"]


def _observe_modular(model: ModularRSSM, batch: dict[str, torch.Tensor]):
    steps, size = batch["actions"].shape[:2]
    state = model.init_state(size, batch["actions"].device)
    return model.observe_rollout(batch["obs"], batch["actions"], 1.0 - batch["is_first"], state, steps)


def modular_rssm_loss(model: ModularRSSM, batch: dict[str, torch.Tensor], beta: float = 1.0,
                      free_nats: float = 3.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The RSSM bound for a :class:`ModularRSSM` on a time-major batch (as
    :func:`distwm.models.planet.losses.memory_batch` builds): ``-log p(o|z)``, ``-log p(r|z)``
    (not at episode starts) and ``beta * max(KL(q || p), free_nats)``."""
    priors, posteriors = _observe_modular(model, batch)
    features = model.get_features(posteriors)
    mask, is_first = batch["mask"], batch["is_first"]
    obs_nll = -model.decode_observation(features).log_prob(batch["obs"])
    kl = kl_divergence(model.get_dist(posteriors["mean"], posteriors["std"]),
                       model.get_dist(priors["mean"], priors["std"]))
    obs_loss = masked_mean(obs_nll, mask)
    kl_loss = masked_mean(kl.clamp(min=free_nats), mask)
    loss = obs_loss + beta * kl_loss
    metrics = {"obs_loss": float(obs_loss.detach()), "kl_loss": float(kl_loss.detach()),
               "kl": float(masked_mean(kl, mask).detach())}
    if model.reward_decoder is not None:
        reward_nll = -model.decode_reward(features).log_prob(batch["rewards"].unsqueeze(-1))
        reward_loss = masked_mean(reward_nll, mask * (1.0 - is_first))
        loss = loss + reward_loss
        metrics["reward_loss"] = float(reward_loss.detach())
    metrics["loss"] = float(loss.detach())
    return loss, metrics


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class RSSMLearner:
    """An RSSM (PlaNet's or a :class:`ModularRSSM`) and its optimiser as a one-sample
    :class:`~distwm.agent.Trainable`: ``update({"sequences": batch})`` takes one step on the
    bound (:func:`~distwm.models.planet.losses.train_step` for PlaNet's RSSM,
    :func:`modular_rssm_loss` under the same non-finite guard for a modular one) on a replay
    batch of ``seq_len + 1`` steps (:func:`~distwm.models.planet.losses.memory_sequences`)."""

    def __init__(self, model, optimizer, *, batch_size: int = 32, seq_len: int = 50, beta: float = 1.0,
                 free_nats: float = 3.0, bit_depth: int = 5, grad_clip: float | None = 1000.0,
                 record_grads: bool = False):
        self.model, self.optimizer = model, optimizer
        self.batch_size, self.seq_len = batch_size, seq_len
        self.beta, self.free_nats, self.bit_depth = beta, free_nats, bit_depth
        self.grad_clip, self.record_grads = grad_clip, record_grads

    def data_spec(self) -> DataSpec:
        return DataSpec(self.batch_size, self.seq_len + 1, 0.0)

    def update(self, batches: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        batch = time_major_batch(batches[DEFAULT_SAMPLE], "obs", self.bit_depth, _device_of(self.model))
        if not isinstance(self.model, ModularRSSM):
            return train_step(self.model, self.optimizer, batch, beta=self.beta, free_nats=self.free_nats,
                              grad_clip=self.grad_clip, record_grads=self.record_grads)
        self.model.train()
        loss, metrics = modular_rssm_loss(self.model, batch, self.beta, self.free_nats)
        return apply_step(self.model, self.optimizer, loss, metrics, self.grad_clip, self.record_grads)


def train_rssm(memory, model, optimizer, record_grads: bool = True, *, steps: int = 100, batch_size: int = 32,
               seq_len: int = 50, beta: float = 1.0, free_nats: float = 3.0, bit_depth: int = 5,
               grad_clip: float | None = 1000.0) -> dict[str, float]:
    """Train an RSSM on replayed trajectories for one optimization phase.

    ``steps`` gradient steps (:meth:`RSSMLearner.update`), each on ``batch_size`` sequences of
    ``seq_len`` transitions sampled from ``memory``; reconstruction, reward and KL objectives
    across the rollout steps. Returns the loss terms averaged over the phase (with
    ``record_grads``, gradient norms per module too; ``skipped`` counts non-finite steps).
    """
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"train_rssm: steps must be a positive int, got {steps!r}")
    learner = RSSMLearner(model, optimizer, batch_size=batch_size, seq_len=seq_len, beta=beta,
                          free_nats=free_nats, bit_depth=bit_depth, grad_clip=grad_clip, record_grads=record_grads)
    replay = EpisodeReplay(memory, batch_size, seq_len)
    return mean_update_metrics([learner.update({DEFAULT_SAMPLE: replay.sample()}) for _ in range(steps)])


@torch.no_grad()
def _predictions(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """One-step prior and posterior reconstructions (T, B, ...) of a batch."""
    if isinstance(model, ModularRSSM):
        priors, posteriors = _observe_modular(model, batch)
        prior_state = {**priors, "stoch": priors["mean"]}
        post_state = {**posteriors, "stoch": posteriors["mean"]}
        return (model.decode_observation(model.get_features(prior_state)).mean,
                model.decode_observation(model.get_features(post_state)).mean)
    seq = model.observe(model.encoder(batch["obs"]), batch["actions"], batch["is_first"])
    return model.decode(seq.states, seq.prior_mean), model.decode(seq.states, seq.posterior_mean)


@torch.no_grad()
def evaluate(memory, model, path: str, eps: int, *, seq_len: int = 16, bit_depth: int = 5) -> dict[str, Any]:
    """Run one RSSM reconstruction/prediction evaluation and save visual outputs.

    Decodes the one-step priors and the posteriors of a sampled sequence and writes
    ``{path}/eval_{eps}.png``: for images a frame grid (target, prior, posterior, via
    :func:`save_frames`), for vectors a plot of the squared errors over time.
    Returns ``prior_mse``, ``posterior_mse`` and the ``image`` path.
    """
    model.eval()
    batch = memory_batch(memory, 1, seq_len, bit_depth, _device_of(model))
    prior, posterior = _predictions(model, batch)
    target = batch["obs"]
    valid = batch["mask"][:, 0] > 0
    target, prior, posterior = target[valid, 0], prior[valid, 0], posterior[valid, 0]
    dims = tuple(range(1, target.dim()))
    prior_err = (prior - target).pow(2).mean(dims).cpu().numpy()
    post_err = (posterior - target).pow(2).mean(dims).cpu().numpy()
    os.makedirs(path, exist_ok=True)
    name = os.path.join(path, f"eval_{eps}")
    if target.dim() == 4:
        image = save_frames(target.cpu(), prior.clamp(-0.5, 0.5).cpu(), posterior.clamp(-0.5, 0.5).cpu(), name)
    else:
        from distwm.utils.utils import lineplot

        image = lineplot(np.arange(len(prior_err)), {"prior": prior_err, "posterior": post_err},
                         f"eval_{eps}", path=path, xaxis="step")
    return {"prior_mse": float(prior_err.mean()), "posterior_mse": float(post_err.mean()), "image": image}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m distwm.training.train_rssm",
        description="Train an RSSM (PlaNet's or a modular one) on episodes of a random policy.",
    )
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--obs-type", default="auto", choices=("auto", "state", "pixels", "both"))
    parser.add_argument("--action-repeat", type=int, default=2)
    parser.add_argument("--model", default="planet", choices=("planet", "modular"))
    parser.add_argument("--encoder", default=None, help="modular: conv, mlp or vit (default by observation)")
    parser.add_argument("--decoder", default=None, help="modular: conv or mlp (default by observation)")
    parser.add_argument("--backbone", default="gru", help="modular: gru, lstm or transformer")
    parser.add_argument("--episodes", type=int, default=50, help="episodes to collect and train on")
    parser.add_argument("--seed-episodes", type=int, default=5)
    parser.add_argument("--steps-per-episode", type=int, default=50, help="gradient steps per episode")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--memory-size", type=int, default=100)
    parser.add_argument("--max-episode-steps", type=int, default=None)
    parser.add_argument("--results-dir", default="runs/train_rssm")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _build_model(args, obs_shape: tuple[int, ...], action_size: int, device) -> torch.nn.Module:
    if args.model == "planet":
        from distwm.models.planet.networks import RecurrentStateSpaceModel

        return RecurrentStateSpaceModel(action_size, obs_shape=obs_shape).to(device)
    from distwm.models.modular_rssm import create_modular_rssm

    image = len(obs_shape) == 3
    return create_modular_rssm(
        args.encoder or ("conv" if image else "mlp"), args.decoder or ("conv" if image else "mlp"),
        args.backbone, obs_shape=obs_shape, action_size=action_size,
        embed_size=1024 if image else 256,
    ).to(device)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Standalone training loop for RSSM with generated replay.

    Builds the env, fills memory with ``--seed-episodes`` random-policy episodes, then runs
    the one training loop (:class:`distwm.loop.TrainLoop`): every round collects an episode
    (random policy: the replay is generated, no planner is needed) and takes
    ``--steps-per-episode`` updates; after each round a row is logged, and every
    ``--eval-every`` episodes the model is evaluated and checkpointed. Returns the logged rows.
    """
    import functools

    from distwm.configs.planet_config import PlanetConfig
    from distwm.controller.rollout_generator import RolloutGenerator
    from distwm.envs import make_env_from_config
    from distwm.loop.train_loop import TrainLoop
    from distwm.memory.planet_memory import Episode, Memory
    from distwm.models.planet.env import PlanetEnv, resolve_device
    from distwm.models.planet.episodes import EpisodeCollector, EpochHook
    from distwm.utils.checkpoint import save_file

    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = resolve_device(args.device)
    config = PlanetConfig(env=args.env, obs_type=args.obs_type, action_repeat=args.action_repeat, seed=args.seed)
    env = PlanetEnv(make_env_from_config(config, args.seed), config.bit_depth, device=device,
                    max_episode_steps=args.max_episode_steps)
    model = _build_model(args, env.observation_size, env.action_size, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, eps=1e-4)
    learner = RSSMLearner(model, optimizer, batch_size=args.batch_size, seq_len=args.seq_len,
                          bit_depth=config.bit_depth)
    memory = Memory(args.memory_size)
    generator = RolloutGenerator(env, device, episode_gen=functools.partial(Episode, postprocess_fn=env.to_storage),
                                 max_episode_steps=args.max_episode_steps, name="train_rssm")
    memory.append(generator.rollout_n(max(1, args.seed_episodes), random_policy=True))
    os.makedirs(args.results_dir, exist_ok=True)
    rows: list[dict[str, Any]] = []
    start = time.time()

    def end_episode(metrics: dict[str, float]) -> bool:
        episode_index = len(rows) + 1
        row: dict[str, Any] = {"episode": episode_index, "env_steps": memory.size, **metrics}
        if episode_index % args.eval_every == 0 or episode_index == args.episodes:
            row.update({f"eval_{k}": v for k, v in evaluate(memory, model, args.results_dir, episode_index,
                                                           bit_depth=config.bit_depth).items()})
            save_file({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "episode": episode_index, "args": vars(args)},
                      os.path.join(args.results_dir, "checkpoint.pt"))
        elapsed = time.time() - start
        eta = elapsed / episode_index * (args.episodes - episode_index)
        print(f"episode {episode_index}/{args.episodes} loss {row['loss']:.3f} "
              f"({episode_index / elapsed:.2f} episodes/s, ETA {eta:.0f}s)", flush=True)
        rows.append(row)
        with open(os.path.join(args.results_dir, "metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps({k: v for k, v in row.items() if not isinstance(v, np.ndarray)}) + "\n")
        return episode_index >= args.episodes

    # episodes, not env steps, end the run: the step budget is unbounded
    TrainLoop(learner, EpisodeCollector(generator, args.action_repeat, random_policy=True),
              EpisodeReplay(memory, args.batch_size, args.seq_len), total_steps=sys.maxsize,
              updates_per_collect=args.steps_per_episode,
              on_update=EpochHook(args.steps_per_episode, end_episode), progress=False).run()
    return rows


if __name__ == "__main__":
    main()
