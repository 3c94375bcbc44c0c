"""Train a recurrent state-space model on replayed episodes, without a planner.

Works with PlaNet's :class:`~distwm.models.rssm.RecurrentStateSpaceModel` and with any
:class:`~distwm.models.modular_rssm.ModularRSSM` (encoder/decoder/backbone ablations). Both
are trained on the same bound: observation and reward likelihoods plus a KL from posterior
to prior clipped below at ``free_nats``.

``python -m distwm.training.train_rssm --env Pendulum-v1 --model modular --backbone lstm``
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, Sequence

import numpy as np
import torch
from torch.distributions import kl_divergence

from distwm.models.modular_rssm import ModularRSSM
from distwm.models.planet_loss import memory_batch, optimizer_step, planet_loss

__all__ = ["modular_rssm_loss", "train_rssm", "evaluate", "save_frames", "main", "build_parser"]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def _observe_modular(model: ModularRSSM, batch: dict[str, torch.Tensor]):
    steps, size = batch["actions"].shape[:2]
    state = model.init_state(size, batch["actions"].device)
    return model.observe_rollout(batch["obs"], batch["actions"], 1.0 - batch["is_first"], state, steps)


def modular_rssm_loss(model: ModularRSSM, batch: dict[str, torch.Tensor], beta: float = 1.0,
                      free_nats: float = 3.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The RSSM bound for a :class:`ModularRSSM` on a time-major batch (as
    :func:`distwm.models.planet_loss.memory_batch` builds): ``-log p(o|z)``, ``-log p(r|z)``
    (not at episode starts) and ``beta * max(KL(q || p), free_nats)``."""
    priors, posteriors = _observe_modular(model, batch)
    features = model.get_features(posteriors)
    mask, is_first = batch["mask"], batch["is_first"]
    obs_nll = -model.decode_observation(features).log_prob(batch["obs"])
    kl = kl_divergence(model.get_dist(posteriors["mean"], posteriors["std"]),
                       model.get_dist(priors["mean"], priors["std"]))
    obs_loss = _masked_mean(obs_nll, mask)
    kl_loss = _masked_mean(kl.clamp(min=free_nats), mask)
    loss = obs_loss + beta * kl_loss
    metrics = {"obs_loss": float(obs_loss.detach()), "kl_loss": float(kl_loss.detach()),
               "kl": float(_masked_mean(kl, mask).detach())}
    if model.reward_decoder is not None:
        reward_nll = -model.decode_reward(features).log_prob(batch["rewards"].unsqueeze(-1))
        reward_loss = _masked_mean(reward_nll, mask * (1.0 - is_first))
        loss = loss + reward_loss
        metrics["reward_loss"] = float(reward_loss.detach())
    metrics["loss"] = float(loss.detach())
    return loss, metrics


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def train_rssm(memory, model, optimizer, record_grads: bool = True, *, steps: int = 100, batch_size: int = 32,
               seq_len: int = 50, beta: float = 1.0, free_nats: float = 3.0, bit_depth: int = 5,
               grad_clip: float | None = 1000.0) -> dict[str, float]:
    """Train an RSSM on replayed trajectories for one optimization phase.

    ``steps`` gradient steps, each on ``batch_size`` sequences of ``seq_len`` transitions
    sampled from ``memory``; reconstruction, reward and KL objectives across the rollout steps.
    Returns the loss terms averaged over the phase (with ``record_grads``, gradient norms
    per module too).
    """
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"train_rssm: steps must be a positive int, got {steps!r}")
    device = _device_of(model)
    model.train()
    rows = []
    for _ in range(steps):
        batch = memory_batch(memory, batch_size, seq_len, bit_depth, device)
        if isinstance(model, ModularRSSM):
            loss, metrics = modular_rssm_loss(model, batch, beta, free_nats)
        else:
            loss, metrics = planet_loss(model, batch["obs"], batch["actions"], batch["rewards"],
                                        batch["is_first"], batch["mask"], beta=beta, free_nats=free_nats)
        metrics.update(optimizer_step(model, optimizer, loss, grad_clip, record_grads=record_grads))
        rows.append(metrics)
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in rows[0]}


def save_frames(target, pred_prior, pred_posterior, name: str, n_rows: int = 5) -> str:
    """Save side-by-side target, prior-prediction, and posterior-prediction frames.

    Each input is ``(T, C, H, W)`` / ``(T, H, W, C)`` or a single frame without the time axis
    (tensor or array, uint8, ``[0, 1]`` or ``[-0.5, 0.5]``: values are normalised to
    ``[0, 1]``). Predictions are resized to the target's size. The PNG ``{name}.png`` shows
    one ``target | prior | posterior`` triple per time step, ``n_rows`` triples a column.
    Returns the file written.
    """
    import cv2
    import imageio.v2 as iio

    from distwm.utils.utils import normalize_frames_for_saving

    if not isinstance(n_rows, int) or n_rows <= 0:
        raise ValueError(f"save_frames: n_rows must be a positive int, got {n_rows!r}")

    def frames(x) -> np.ndarray:
        array = x.detach().cpu().float().numpy() if torch.is_tensor(x) else np.asarray(x)
        return normalize_frames_for_saving(array[None] if array.ndim == 3 else array)

    target = frames(target)
    height, width = target.shape[1:3]
    steps = len(target)
    panels = [target]
    for name_, pred in (("pred_prior", pred_prior), ("pred_posterior", pred_posterior)):
        pred = frames(pred)
        if len(pred) != steps:
            raise ValueError(f"save_frames: {name_} has {len(pred)} frames, target has {steps}")
        panels.append(np.stack([f if f.shape[:2] == (height, width) else cv2.resize(f, (width, height))
                                for f in pred]))
    triples = np.concatenate(panels, axis=2)  # (T, H, 3W, 3)
    columns = -(-steps // n_rows)
    grid = np.ones((min(steps, n_rows) * height, columns * 3 * width, 3), np.float32)
    for t, triple in enumerate(triples):
        row, col = t % n_rows, t // n_rows
        grid[row * height:(row + 1) * height, col * 3 * width:(col + 1) * 3 * width] = triple
    path = f"{name}.png"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    iio.imwrite(path, np.round(grid * 255).astype(np.uint8))
    return path


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
        from distwm.models.rssm import RecurrentStateSpaceModel

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

    Builds the env, fills memory with ``--seed-episodes`` random-policy episodes, then for
    every further episode collects it (random policy: the replay is generated, no planner is
    needed), trains for one phase, logs, and every ``--eval-every`` episodes evaluates and
    checkpoints. Returns the logged rows.
    """
    import functools

    from distwm.configs.planet_config import PlanetConfig
    from distwm.controller.rollout_generator import RolloutGenerator
    from distwm.envs import make_env_from_config
    from distwm.memory.planet_memory import Episode, Memory
    from distwm.models.planet_agent import resolve_device
    from distwm.models.planet_env import PlanetEnv

    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = resolve_device(args.device)
    config = PlanetConfig(env=args.env, obs_type=args.obs_type, action_repeat=args.action_repeat, seed=args.seed)
    env = PlanetEnv(make_env_from_config(config, args.seed), config.bit_depth, device=device,
                    max_episode_steps=args.max_episode_steps)
    model = _build_model(args, env.observation_size, env.action_size, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, eps=1e-4)
    memory = Memory(args.memory_size)
    generator = RolloutGenerator(env, device, episode_gen=functools.partial(Episode, postprocess_fn=env.to_storage),
                                 max_episode_steps=args.max_episode_steps, name="train_rssm")
    memory.append(generator.rollout_n(max(1, args.seed_episodes), random_policy=True))
    os.makedirs(args.results_dir, exist_ok=True)
    rows: list[dict[str, Any]] = []
    start = time.time()
    for episode_index in range(1, args.episodes + 1):
        memory.append([generator.rollout_once(random_policy=True)])
        row: dict[str, Any] = {"episode": episode_index, "env_steps": memory.size, **train_rssm(
            memory, model, optimizer, record_grads=False, steps=args.steps_per_episode,
            batch_size=args.batch_size, seq_len=args.seq_len, bit_depth=config.bit_depth)}
        if episode_index % args.eval_every == 0 or episode_index == args.episodes:
            row.update({f"eval_{k}": v for k, v in evaluate(memory, model, args.results_dir, episode_index,
                                                           bit_depth=config.bit_depth).items()})
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "episode": episode_index, "args": vars(args)},
                       os.path.join(args.results_dir, "checkpoint.pt"))
        elapsed = time.time() - start
        eta = elapsed / episode_index * (args.episodes - episode_index)
        print(f"episode {episode_index}/{args.episodes} loss {row['loss']:.3f} "
              f"({episode_index / elapsed:.2f} episodes/s, ETA {eta:.0f}s)", flush=True)
        rows.append(row)
        with open(os.path.join(args.results_dir, "metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps({k: v for k, v in row.items() if not isinstance(v, np.ndarray)}) + "\n")
    return rows


if __name__ == "__main__":
    main()
