#!/usr/bin/env python
"""Does IRIS's tokenizer keep MinAtar's one-pixel objects? Trains it on frames of random play in
MinAtar Breakout (10x10 RGB, one pixel per cell) at each ``--l2-weights`` value of
``IRISConfig.reconstruction_l2_weight`` and prints the reconstruction error on object pixels (ball,
trail, paddle) and on the background, as the sum over RGB of |error| in [0, 1] units (2.0: a
yellow ball drawn black).

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_iris_tokenizer_objects.py --updates 1000

IRIS trains the tokenizer on L1 + perceptual; without the perceptual term, L1's optimum for a
pixel that is usually background is the background's colour, and the objects vanish.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def random_frames(count: int, seed: int = 0) -> np.ndarray:
    import distwm

    env = distwm.make_env("minatar:breakout", seed=seed, size=(10, 10))
    env.action_space.seed(seed)
    frames = []
    env.reset()
    while len(frames) < count:
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        frames.append(obs["image"])
        if terminated or truncated:
            env.reset()
    return np.stack(frames)


def object_errors(agent, frames: np.ndarray) -> tuple[float, float]:
    """Mean |error| summed over RGB on object pixels and on background pixels."""
    import torch

    with torch.no_grad():
        x = torch.as_tensor(frames).float() / 255.0
        error = (agent.reconstruct(frames).float() - x).abs().sum(1)
    brick = (x[:, 2] > 0.5) & (x[:, 0] < 0.3)  # the blue brick rows
    objects = (x.sum(1) > 0) & ~brick
    return float(error[objects].mean()), float(error[~objects].mean())


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=1000)
    p.add_argument("--l2-weights", default="0,10", help="comma-separated reconstruction_l2_weight values")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    from distwm.configs.runtime_config import RunConfig
    from distwm.models.iris.agent import IRISAgent
    from distwm.runtime.cli import resolve_config_path

    torch.set_num_threads(args.threads)
    frames, held_out = random_frames(4000), random_frames(256, seed=1)
    preset = RunConfig.from_yaml(resolve_config_path("iris-minatar")).build_agent_config()
    results = []
    for weight in (float(w) for w in args.l2_weights.split(",")):
        torch.manual_seed(0)
        config = preset.replace(reconstruction_l2_weight=weight)
        agent, rng, start = IRISAgent(config, 3, "cpu"), np.random.default_rng(0), time.perf_counter()
        for _ in range(args.updates):
            agent.update_autoencoder(frames[rng.integers(0, len(frames), config.tokenizer_batch_size)])
        on_objects, on_background = object_errors(agent, held_out)
        results.append({"reconstruction_l2_weight": weight, "updates": args.updates,
                        "object_pixel_error": round(on_objects, 3), "background_error": round(on_background, 3),
                        "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(results[-1]), flush=True)
    return results


if __name__ == "__main__":
    main()
