#!/usr/bin/env python
"""Seconds per DreamerV3 gradient update: distwm vs RLlib, side by side in one process.

Both learners train DreamerV3 at model size XS (RLlib's size table, which distwm's presets
follow) on CartPole-v1 batches of B=16 sequences of T=64 steps, on CPU. The same replay
sequences (collected by RLlib's own env runner) feed both; updates alternate between the two
so that load on the machine affects them alike. Prints each learner's median seconds per
update (wall clock, and CPU time of the process, which a busy machine disturbs less),
parameter counts, and the speed ratios (RLlib time / distwm time; > 1 means distwm is faster).

    python scripts/bench_dreamer_update.py [--updates 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np


def rllib_learner(batch_size: int, seq_len: int):
    """An RLlib DreamerV3 (torch, XS) whose replay holds enough CartPole steps to sample."""
    import ray
    from ray.rllib.algorithms.dreamerv3.dreamerv3 import DreamerV3Config

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    config = (
        DreamerV3Config()
        .environment("CartPole-v1")
        .framework("torch")
        .training(model_size="XS", batch_size_B=batch_size, batch_length_T=seq_len,
                  training_ratio=1024)
        .env_runners(num_env_runners=0)
        .learners(num_learners=0)
    )
    algo = config.build_algo()
    algo.train()  # fills the replay with >= B*T random steps and makes the first update
    return algo


def rllib_batch(algo, batch_size: int, seq_len: int):
    from ray.rllib.core.columns import Columns
    from ray.rllib.utils.numpy import one_hot

    sample = algo.replay_buffer.sample(batch_size_B=batch_size, batch_length_T=seq_len)
    sample["actions_ints"] = sample[Columns.ACTIONS]
    sample[Columns.ACTIONS] = one_hot(sample["actions_ints"], depth=2)
    return sample


def timed(fn) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def rllib_update(algo, sample) -> tuple[float, float]:
    from ray.rllib.policy.sample_batch import SampleBatch

    return timed(lambda: algo.learner_group.update(
        batch=SampleBatch(sample).as_multi_agent(),
        timesteps={"num_env_steps_sampled_lifetime": 10_000}))


def to_distwm_batch(sample) -> dict[str, np.ndarray]:
    """RLlib's replay columns -> distwm's format (action[t] = the action that led to obs t)."""
    is_first = np.asarray(sample["is_first"], bool)
    taken = np.asarray(sample["actions"], np.float32)
    led_to = np.concatenate([np.zeros_like(taken[:, :1]), taken[:, :-1]], 1)
    led_to[is_first] = 0.0
    return {
        "state": np.asarray(sample["obs"], np.float32),
        "action": led_to,
        "reward": np.asarray(sample["rewards"], np.float32),
        "is_first": is_first,
        "is_terminal": np.asarray(sample["is_terminated"], bool),
        "is_last": np.asarray(sample["is_last"], bool),
    }


def distwm_learner(batch_size: int, seq_len: int):
    import gymnasium as gym

    from distwm.configs.dreamer_config import DreamerConfig
    from distwm.models.dreamer import Dreamer

    cfg = DreamerConfig(version="v3", model_size="XS", env="CartPole-v1",
                        batch_size=batch_size, train_seq_len=seq_len)
    obs_space = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)})
    return Dreamer.from_config(cfg, obs_space, gym.spaces.Discrete(2), device="cpu")


def distwm_update(agent, batch) -> tuple[float, float]:
    return timed(lambda: agent.update({"sequences": batch}))


def count_params(modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=8, help="timed updates per learner")
    parser.add_argument("--warmup", type=int, default=2, help="untimed updates per learner")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, B={args.batch_size} T={args.seq_len}, model size XS", flush=True)
    t0 = time.perf_counter()
    algo = rllib_learner(args.batch_size, args.seq_len)
    print(f"RLlib DreamerV3 built and replay filled in {time.perf_counter() - t0:.1f}s", flush=True)
    agent = distwm_learner(args.batch_size, args.seq_len)
    module = algo.get_module()
    rllib_params = count_params([module])
    ours = count_params([agent.world_model, agent.behavior])
    print(f"parameters: RLlib {rllib_params / 1e6:.3f}M, distwm {ours / 1e6:.3f}M "
          "(world model, actor, critic and slow critic)", flush=True)

    times: dict[str, list[tuple[float, float]]] = {"rllib": [], "distwm": []}
    for i in range(args.warmup + args.updates):
        sample = rllib_batch(algo, args.batch_size, args.seq_len)
        batch = to_distwm_batch(sample)
        order = ("rllib", "distwm") if i % 2 == 0 else ("distwm", "rllib")
        for name in order:
            seconds = rllib_update(algo, sample) if name == "rllib" else distwm_update(agent, batch)
            if i >= args.warmup:
                times[name].append(seconds)
        if i >= args.warmup:
            (rw, rc), (dw, dc) = times["rllib"][-1], times["distwm"][-1]
            print(f"update {i - args.warmup + 1}/{args.updates}: RLlib {rw:.3f}s wall "
                  f"({rc:.3f}s CPU), distwm {dw:.3f}s wall ({dc:.3f}s CPU)", flush=True)
    print()
    for label, index in (("wall-clock", 0), ("CPU time", 1)):
        rllib_s = statistics.median(t[index] for t in times["rllib"])
        ours_s = statistics.median(t[index] for t in times["distwm"])
        print(f"{label}: RLlib DreamerV3 XS {rllib_s:.3f} s/update, distwm {ours_s:.3f} s/update "
              f"(medians of {args.updates}); speed ratio RLlib/distwm {rllib_s / ours_s:.2f}x "
              "(target >= 1.5x)")
    import ray

    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
