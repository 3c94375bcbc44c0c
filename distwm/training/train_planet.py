"""PlaNet training entry points: one optimisation step (:func:`train`) and a script (:func:`main`).

``python -m distwm.training.train_planet --env cartpole-swingup --epochs 100``
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

__all__ = ["train", "main", "build_parser"]


def train(memory, rssm, optimizer, device, N=32, H=50, beta=1.0, grads=False, **kwargs):
    """Training implementation as indicated in: Learning Latent Dynamics for Planning from
    Pixels, arXiv:1811.04551.

    (a.) The standard variational bound, using only single-step predictions: one gradient
    step on ``N`` sequences of ``H`` transitions sampled from ``memory``, the step
    :meth:`PlanetCore.update <distwm.models.planet.core.PlanetCore.update>` takes
    (:func:`distwm.models.planet.losses.train_step`; a non-finite loss or gradient skips it).
    Keyword arguments ``bit_depth`` (5), ``free_nats`` (3.0) and ``grad_clip`` (1000.0) are
    passed on to :func:`distwm.models.planet.losses.train_on_memory`. Returns the loss terms
    (``loss``, ``obs_loss``, ``reward_loss``, ``kl_loss``, ``kl``, ``grad_norm``, ``skipped``
    and, with ``grads``, per-module gradient norms).
    """
    from distwm.models.planet.losses import train_on_memory

    return train_on_memory(memory, rssm, optimizer, device, N=N, H=H, beta=beta, grads=grads, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m distwm.training.train_planet",
        description="Train PlaNet in one process: collect episodes, fit the RSSM, plan with CEM.",
    )
    parser.add_argument("--config", help="PlanetConfig YAML file (the flags below override it)")
    parser.add_argument("--env", help="env id, e.g. cartpole-swingup or Pendulum-v1")
    parser.add_argument("--obs-type", choices=("auto", "state", "pixels", "both"))
    parser.add_argument("--action-repeat", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", help="cpu, cuda or auto")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any PlanetConfig field (repeatable)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--chunk-length", type=int, default=50, help="transitions per sequence (H)")
    parser.add_argument("--beta", type=float, default=1.0, help="KL weight")
    parser.add_argument("--save-every", type=int, default=25, help="epochs between evaluations/checkpoints")
    parser.add_argument("--scheduler", default="none", choices=("none", "step", "cosine", "exponential", "plateau"))
    parser.add_argument("--max-episode-steps", type=int)
    parser.add_argument("--results-dir", help="default: <log_dir>/<exp_name>")
    parser.add_argument("--headless", action="store_true", help="no evaluation videos")
    parser.add_argument("--resume", help="checkpoint to continue from")
    return parser


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Example PlaNet/RSSM training script with rollout collection and evaluation.

    Builds a :class:`~distwm.models.planet.Planet` from the config and flags and runs
    :meth:`Planet.train <distwm.models.planet.trainer.Planet.train>` (the one training loop):
    it trains on replayed episodes and periodically saves videos and checkpoints. Returns the
    per-epoch metrics.
    """
    import yaml

    from distwm.configs.planet_config import PlanetConfig
    from distwm.models.planet import Planet

    args = build_parser().parse_args(argv)
    config = PlanetConfig.from_yaml(args.config) if args.config else PlanetConfig()
    overrides = {k: v for k, v in (("env", args.env), ("obs_type", args.obs_type),
                                   ("action_repeat", args.action_repeat), ("seed", args.seed),
                                   ("device", args.device)) if v is not None}
    for assignment in args.set:  # applied together, so that related fields can change at once
        key, sep, raw = assignment.partition("=")
        if not sep:
            raise ValueError(f"Bad --set {assignment!r}: expected key=value")
        overrides[key.strip()] = yaml.safe_load(raw)
    config = config.replace(**overrides)
    planet = Planet(config, headless=args.headless, max_episode_steps=args.max_episode_steps,
                    results_dir=args.results_dir)
    if args.resume:
        planet.load_checkpoint(args.resume)
    history = planet.train(
        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
        H=args.chunk_length, beta=args.beta, save_every=args.save_every,
        scheduler_type=None if args.scheduler == "none" else args.scheduler,
    )
    if history:
        print(json.dumps(history[-1]))
    return history


if __name__ == "__main__":
    main()
