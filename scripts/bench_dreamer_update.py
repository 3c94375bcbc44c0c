#!/usr/bin/env python
"""Seconds per DreamerV3 gradient update: distwm vs RLlib, side by side in one process.

Both learners train DreamerV3 at model size XS (RLlib's size table, which distwm's presets
follow) on CartPole-v1 batches of B=16 sequences of T=64 steps, on CPU. The same replay
sequences (collected by RLlib's own env runner) feed both; updates alternate between the
learners (the order rotates every round) so that load on the machine affects them alike.

``--variant`` (repeatable) times several distwm learners side by side, each with some speed
switches of ``DreamerConfig`` on (``distwm.models.dreamer.acceleration``): a name from
``VARIANTS`` (``baseline``: every switch off; ``compile``: ``compile="default"``; ...) or
``name:field=value,field=value``; ``--keep-freed-memory on|off`` sets the one process-wide
switch for the whole run (both learners live in this process). Prints per variant the median seconds per update (wall
clock, and CPU time of the process, which a busy machine disturbs less) and the speed ratios
(RLlib time / distwm time; > 1 means distwm is faster).

    python scripts/bench_dreamer_update.py [--updates 8] [--threads 2] \
        [--variant baseline --variant compile] [--version v3]
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


#: named variants: DreamerConfig speed fields set on top of distwm's defaults
#: (``keep_freed_memory`` is process-wide, so it is set per run: ``--keep-freed-memory``)
VARIANTS: dict[str, dict] = {
    "baseline": {"observe_threads": 0, "imagine_split": 1, "defer_weight_grads": False},  # every switch off
    "no-split": {"imagine_split": 1},  # the defaults less imagine_split (observe_threads: 1)
    "no-defer": {"defer_weight_grads": False},  # the defaults less defer_weight_grads
    "defaults": {},  # observe_threads: 1, imagine_split: 2, defer_weight_grads: true
    "compile": {"compile": "default"},
    "compile-max-autotune": {"compile": "max-autotune-no-cudagraphs"},
    "bf16": {"autocast": "bf16"},
    "bf16-compile": {"autocast": "bf16", "compile": "default"},
}


def parse_variant(spec: str) -> tuple[str, dict]:
    """``name`` (a key of :data:`VARIANTS`) or ``name:field=value,...`` -> ``(name, fields)``."""
    if ":" not in spec:
        if spec not in VARIANTS:
            raise SystemExit(f"unknown variant {spec!r}; named ones: {sorted(VARIANTS)} "
                             "(or name:field=value,...)")
        return spec, dict(VARIANTS[spec])
    name, _, fields = spec.partition(":")
    out = {}
    for item in filter(None, fields.split(",")):
        key, _, value = item.partition("=")
        if key == "keep_freed_memory":
            raise SystemExit("keep_freed_memory changes the whole process (both learners): set "
                             "it for the run with --keep-freed-memory on|off")
        out[key] = {"true": True, "false": False}.get(value.lower(), int(value) if value.isdigit() else value)
    return name, out


def distwm_learner(batch_size: int, seq_len: int, version: str = "v3", **speed):
    import gymnasium as gym

    from distwm.configs.dreamer_config import DreamerConfig
    from distwm.models.dreamer import Dreamer

    cfg = DreamerConfig(version=version, model_size="XS", env="CartPole-v1",
                        batch_size=batch_size, train_seq_len=seq_len, **speed)
    obs_space = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)})
    return Dreamer.from_config(cfg, obs_space, gym.spaces.Discrete(2), device="cpu")


def distwm_update(agent, batch) -> tuple[float, float]:
    return timed(lambda: agent.update({"sequences": batch}))


def count_params(modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=8, help="timed updates per learner")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed updates per learner (compiled variants compile in the first)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--version", default="v3", help="distwm DreamerConfig.version (v3, v3-2024)")
    parser.add_argument("--variant", action="append", default=[],
                        help=f"distwm variant, repeatable: {sorted(VARIANTS)} or name:field=value,... "
                             "(default: baseline)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the medians, ratios, parameter counts and setting here "
                             "(what the README's speed table is rendered from)")
    parser.add_argument("--note", default="", help="the machine's load etc., stored in --json")
    parser.add_argument("--keep-freed-memory", choices=("on", "off"), default="on",
                        help="DreamerConfig.keep_freed_memory of every distwm learner (default on, "
                             "as distwm runs); it changes the allocator of the whole process, so "
                             "RLlib's learner runs with the same setting from the first distwm update")
    args = parser.parse_args(argv)
    variants = dict(parse_variant(v) for v in (args.variant or ["baseline"]))

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, B={args.batch_size} T={args.seq_len}, model size XS, "
          f"distwm version {args.version}", flush=True)
    t0 = time.perf_counter()
    algo = rllib_learner(args.batch_size, args.seq_len)
    print(f"RLlib DreamerV3 built and replay filled in {time.perf_counter() - t0:.1f}s", flush=True)
    keep = args.keep_freed_memory == "on"
    agents = {name: distwm_learner(args.batch_size, args.seq_len, args.version,
                                   keep_freed_memory=keep, **fields)
              for name, fields in variants.items()}
    module = algo.get_module()
    rllib_params = count_params([module])
    first = next(iter(agents.values()))
    ours = count_params([first.world_model, first.behavior])
    print(f"parameters: RLlib {rllib_params / 1e6:.3f}M, distwm {ours / 1e6:.3f}M "
          "(world model, actor, critic and slow critic)", flush=True)
    for name, fields in variants.items():
        print(f"variant {name}: {fields or 'every speed switch off'}", flush=True)

    names = ["rllib", *agents]
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for i in range(args.warmup + args.updates):
        sample = rllib_batch(algo, args.batch_size, args.seq_len)
        batch = to_distwm_batch(sample)
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:  # rotate the order every round
            seconds = (rllib_update(algo, sample) if name == "rllib"
                       else distwm_update(agents[name], batch))
            if i < args.warmup:
                print(f"warmup {i + 1}/{args.warmup}: {name} {seconds[0]:.2f}s", flush=True)
            else:
                times[name].append(seconds)
        if i >= args.warmup:
            line = ", ".join(f"{n} {times[n][-1][0]:.3f}s ({times[n][-1][1]:.3f}s CPU)" for n in names)
            print(f"update {i - args.warmup + 1}/{args.updates}: {line}", flush=True)
    print()
    med = {n: tuple(statistics.median(t[k] for t in times[n]) for k in (0, 1)) for n in names}
    print(f"medians of {args.updates} updates; ratio = RLlib time / distwm time (> 1: distwm faster)")
    print(f"| {'learner':<24} | s/update wall | s/update CPU | ratio wall | ratio CPU |")
    print(f"|{'-' * 26}|---------------|--------------|------------|-----------|")
    for n in names:
        wall, cpu = med[n]
        label = "RLlib DreamerV3 (torch)" if n == "rllib" else f"distwm {n}"
        print(f"| {label:<24} | {wall:13.3f} | {cpu:12.3f} | {med['rllib'][0] / wall:9.2f}x "
              f"| {med['rllib'][1] / cpu:8.2f}x |")
    if args.json:
        import json

        out = {"setting": {"model_size": "XS", "batch_size": args.batch_size, "seq_len": args.seq_len,
                           "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                           "updates": args.updates, "warmup": args.warmup, "version": args.version,
                           "torch": torch.__version__,
                           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
                           "keep_freed_memory": keep,
                           "load_average_1min": os.getloadavg()[0], "note": args.note},
               "parameters": {"rllib": rllib_params, "distwm": ours},
               "variants": {n: variants.get(n, {}) for n in agents},
               "learners": {n: {"wall_s": med[n][0], "cpu_s": med[n][1],
                                "ratio_wall": med["rllib"][0] / med[n][0],
                                "ratio_cpu": med["rllib"][1] / med[n][1],
                                "times": [list(t) for t in times[n]]} for n in names}}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {args.json}")
    import ray

    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
