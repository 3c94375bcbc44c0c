"""PlaNet learning curve on a cheap state-observation task, and CEM planning speed on CPU.

1. Learning: :class:`distwm.models.planet.Planet` on ``Pendulum-v1`` (state observations,
   action repeat 2, 100 agent steps an episode) for ``--epochs`` epochs or ``--budget``
   seconds: each epoch collects one episode with the CEM planner, then trains the RSSM. Prints
   the return of every collected episode beside the mean return of a random policy, and saves
   ``learning_curve.png`` and ``learning_curve.json`` under ``--out``.
2. Planning speed: planned env steps per second of a PlaNet agent with the *default* model and
   planner (12 steps x 1000 candidates x 10 iterations, top 100) on CPU, for 1 env and for a
   batch of envs planned together (as an env worker of the runtime does).

    nice python scripts/bench_planet_learning.py --budget 300
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def _planning_speed(num_envs: int, seconds: float) -> float:
    """Planned env steps per second of the default PlaNet agent (state observations)."""
    import gymnasium as gym
    import torch

    from distwm.configs.planet_config import PlanetConfig
    from distwm.models.planet import PlanetCore

    obs_space = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)})
    agent = PlanetCore.from_config(PlanetConfig(device="cpu"), obs_space,
                                   gym.spaces.Box(-1.0, 1.0, (1,), np.float32))
    state = agent.initial_state(num_envs)
    obs = {"state": np.zeros((num_envs, 3), np.float32), "is_first": np.zeros(num_envs, bool)}
    agent.act(obs, state, explore=False)  # warm up
    steps, start = 0, time.perf_counter()
    with torch.no_grad():
        while time.perf_counter() - start < seconds:
            _, state = agent.act(obs, state, explore=True)
            steps += num_envs
    return steps / (time.perf_counter() - start)


def _random_return(planet, episodes: int) -> float:
    return float(np.mean([e.info["return"] for e in planet.rollout_gen.rollout_n(episodes, random_policy=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds for the learning run")
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--candidates", type=int, default=300, help="CEM candidates while learning")
    parser.add_argument("--iterations", type=int, default=5, help="CEM iterations while learning")
    parser.add_argument("--speed-seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench_planet")
    args = parser.parse_args()

    import torch

    from distwm.configs.planet_config import PlanetConfig
    from distwm.models.planet import Planet
    from distwm.utils.utils import lineplot

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    print(f"== CEM planning speed, default planner, {args.threads} torch thread(s) ==", flush=True)
    speeds = {n: _planning_speed(n, args.speed_seconds) for n in (1, 8)}
    for n, speed in speeds.items():
        print(f"  {n} env(s) planned together: {speed:.2f} env steps/s", flush=True)
    print(f"  batching 8 envs: {speeds[8] / speeds[1]:.2f}x the steps/s of one", flush=True)

    config = PlanetConfig(
        env="Pendulum-v1", obs_type="state", action_repeat=2, time_limit=200, device="cpu",
        seed=args.seed, state_size=64, latent_size=16, hidden_size=64, embedding_size=64,
        free_nats=1.0, learning_rate=1e-3, num_candidates=args.candidates,
        num_iterations=args.iterations, top_candidates=max(10, args.candidates // 10),
        planning_horizon=12, seed_episodes=5, log_dir=args.out, exp_name="pendulum",
    )
    planet = Planet(config, headless=True)
    random_return = _random_return(planet, 5)
    print(f"\n== PlaNet on Pendulum-v1 (state), random policy: {random_return:.1f} ==", flush=True)
    planet.memory.clear()
    returns: list[float] = []
    start = time.time()

    def progress(row: dict) -> bool:
        returns.append(row["train_return"])
        done = len(returns)
        elapsed = time.time() - start
        eta = elapsed / done * (args.epochs - done)
        print(f"epoch {done:3d} env steps {row['env_steps']:6d} return {row['train_return']:8.1f} "
              f"loss {row['loss']:.3f} (obs {row['obs_loss']:.3f} reward {row['reward_loss']:.3f}) "
              f"elapsed {elapsed:.0f}s ETA {eta:.0f}s", flush=True)
        if elapsed > args.budget:
            print(f"budget of {args.budget:.0f}s reached", flush=True)
            return True
        return False

    planet.train(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=32, H=32,
                 save_every=10**9, scheduler_type=None, callback=progress)

    os.makedirs(args.out, exist_ok=True)
    episodes = np.arange(1, len(returns) + 1)
    plot = lineplot(episodes, {"PlaNet (CEM)": returns, "random policy": [random_return] * len(returns)},
                    "learning_curve", path=args.out, xaxis="collected episode (100 agent steps)")
    first, last = np.mean(returns[:5]), np.mean(returns[-5:])
    result = {"random_return": random_return, "returns": returns, "first5": float(first),
              "last5": float(last), "planning_env_steps_per_s": {str(k): v for k, v in speeds.items()}}
    with open(os.path.join(args.out, "learning_curve.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"\nmean return of the first 5 episodes {first:.1f}, of the last 5 {last:.1f} "
          f"(random {random_return:.1f}); curve: {plot}", flush=True)


if __name__ == "__main__":
    main()
