"""Throughput figures of the Ray actor-learner runtime (prints them; no pass/fail).

1. Collection: env steps/s of the collection path (EnvWorker actors acting with the policy and
   sending chunks into a replay shard, no learner) with 1 and 2 workers, against a plain
   single-process loop over the same envs and policy, as ratios per core (target >= 0.85).
2. One replay shard: insert and sample throughput in frames/s (64x64 RGB frames), through Ray
   and in process.
3. The learner's idle fraction (time waiting for data) at the target replay ratio when the
   replay holds enough data (target < 5%).

Usage::

    python scripts/bench_runtime.py                      # tiny Dreamer on Pendulum-v1 (state)
    python scripts/bench_runtime.py --model runtime_agent:TinyAgentConfig --env sign
    python scripts/bench_runtime.py --seconds 20 --envs 4 --set model_size=S
"""

from __future__ import annotations

import argparse
import os
import sys
import shutil
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TESTS = os.path.join(ROOT, "tests")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="dreamer", help="model name or module:ConfigClass")
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="agent config override (default for dreamer: model_size=tiny, "
                        "batch_size=16, train_seq_len=32, obs_type=state)")
    p.add_argument("--envs", type=int, default=2, help="envs per worker")
    p.add_argument("--chunk", type=int, default=64, help="chunk length")
    p.add_argument("--seconds", type=float, default=10.0, help="measuring time per figure")
    p.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray instance")
    p.add_argument("--skip", action="append", default=[], choices=["collect", "shard", "learner"])
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the figures here (what the README's runtime figures are rendered from)")
    p.add_argument("--note", default="", help="the machine's load etc., stored in --json")
    return p.parse_args()


def build_run(args):
    from distwm.configs.runtime_config import RunConfig, RuntimeConfig

    agent = {"env": args.env}
    if args.model == "dreamer":
        agent.update(model_size="tiny", batch_size=16, train_seq_len=32, obs_type="state")
    run = RunConfig(model=args.model, agent=agent,
                    runtime=RuntimeConfig(chunk_length=args.chunk, envs_per_worker=args.envs,
                                          env_factory="distwm.envs:make_env_from_config"
                                          if ":" not in args.model else "runtime_agent:make_env"))
    for assignment in args.overrides:
        run = run.apply_override(assignment)
    return run.validate()


# -- 1. collection -----------------------------------------------------------------------------

def plain_loop_fps(run, seconds: float) -> float:
    """Env steps/s of EnvRunner in this process (one core): same envs, policy and chunks."""
    from distwm.loop.env_loop import EnvRunner, build_agent, derive_seed, limit_torch_threads, make_envs

    limit_torch_threads(1)
    cfg = run.build_agent_config()
    seeds = [derive_seed(0, 99, e) for e in range(run.runtime.envs_per_worker)]
    envs = make_envs(run.runtime.env_factory, cfg, seeds)
    runner = EnvRunner(envs, build_agent(cfg, envs[0].observation_space, envs[0].action_space), seeds)
    runner.collect_chunk(run.runtime.chunk_length)  # warm-up
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        chunk, _, _ = runner.collect_chunk(run.runtime.chunk_length)
        steps += chunk["reward"].size
    runner.close()
    return steps / (time.perf_counter() - start)


def actor_collection_fps(run, workers: int, seconds: float) -> float:
    """Env steps/s of ``workers`` EnvWorker actors sending chunks into one shard (no learner)."""
    import ray

    from distwm.runtime.env_worker import EnvWorker
    from distwm.runtime.replay_shard import ReplayShard

    rt = run.runtime
    shard = ray.remote(ReplayShard).options(num_cpus=0).remote(
        0, 2_000_000, rt.chunk_length, 8, 0.0, 0, 0.0)
    actors = [ray.remote(EnvWorker).options(num_cpus=1).remote(run.to_dict(), i, cpus=1.0)
              for i in range(workers)]
    ray.get([a.setup.remote() for a in actors])
    ray.get([a.collect.remote([shard], None, 0.5) for a in actors])  # warm-up
    calls = {a.collect.remote([shard], None, 1.0): a for a in actors}
    start, steps = time.perf_counter(), 0
    while True:
        ready, _ = ray.wait(list(calls), num_returns=1)
        actor = calls.pop(ready[0])
        steps += ray.get(ready[0])["steps"]
        if time.perf_counter() - start >= seconds:
            break
        calls[actor.collect.remote([shard], None, 1.0)] = actor
    elapsed = time.perf_counter() - start
    for ref in calls:  # the in-flight calls' steps fall after the clock stopped
        ray.get(ref)
    ray.get([a.flush.remote() for a in actors])
    for a in actors + [shard]:
        ray.kill(a)
    return steps / elapsed


# -- 2. one shard ------------------------------------------------------------------------------

def fake_chunk(streams: int, length: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 255, (streams, length, 3, 64, 64), dtype=np.uint8),
        "action": rng.standard_normal((streams, length, 6)).astype(np.float32),
        "reward": rng.standard_normal((streams, length)).astype(np.float32),
        "is_first": np.zeros((streams, length), bool),
        "is_terminal": np.zeros((streams, length), bool),
        "is_last": np.zeros((streams, length), bool),
    }


def shard_throughput(seconds: float, streams: int = 2, length: int = 64, batch: int = 16,
                     seq_len: int = 64) -> dict[str, float]:
    import ray

    from distwm.memory.replay import SequenceReplay
    from distwm.runtime.replay_shard import ReplayShard

    chunk = fake_chunk(streams, length)
    frames = streams * length
    out = {}
    # in process
    replay = SequenceReplay(100_000, length, seq_len)
    ids = [f"s{i}" for i in range(streams)]
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds / 2:
        replay.insert(chunk, ids)
        n += 1
    out["insert_local"] = n * frames / (time.perf_counter() - start)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds / 2:
        replay.sample(batch)
        n += 1
    out["sample_local"] = n * batch * seq_len / (time.perf_counter() - start)
    # through Ray (the driver plays the workers and the learner; 4 calls in flight), without and
    # with the shard's durable log (every accepted chunk appended and flushed to the OS)
    for suffix, root in (("", None), ("_logged", tempfile.mkdtemp(prefix="distwm-bench-log-"))):
        shard = ray.remote(ReplayShard).options(num_cpus=0).remote(
            0, 100_000, length, seq_len, 1e9, 0, 1e18, 0, root, "npz", 10 ** 12)
        ray.get(shard.open.remote())
        chunk_ref = ray.put(chunk)
        step = [0]

        def insert():
            step[0] += length
            return shard.insert.remote(ids, [step[0]] * streams, chunk_ref)

        for name, call, per_call in (("insert_ray", insert, frames),
                                     ("sample_ray", lambda: shard.sample.remote(batch, 10.0),
                                      batch * seq_len)):
            ray.get(call())
            inflight = [call() for _ in range(4)]
            start, n = time.perf_counter(), 0
            while time.perf_counter() - start < seconds / 2:
                ray.get(inflight.pop(0))
                n += 1
                inflight.append(call())
            out[name + suffix] = n * per_call / (time.perf_counter() - start)
            ray.get(inflight)
        if root is not None:
            stats = ray.get(shard.get_stats.remote())
            out["log_seconds_per_chunk"] = stats["log_time"] / max(stats["inserted"] / length / streams, 1)
            out["log_mb"] = stats["log_bytes"] / 2 ** 20
            shutil.rmtree(root, ignore_errors=True)
        ray.kill(shard)
    return out


# -- 3. learner idle ---------------------------------------------------------------------------

def learner_idle(run, seconds: float) -> dict[str, float]:
    """Idle fraction of a Learner actor at the target ratio with enough data in one shard."""
    import ray

    from distwm.runtime.env_worker import EnvWorker
    from distwm.runtime.learner import Learner
    from distwm.runtime.replay_shard import ReplayShard
    from distwm.runtime.setup import probe_run

    spec = probe_run(run)
    rt = run.runtime
    steps_per_update = spec.steps_per_update
    # prefill enough for ~5 updates/s over the window at the target ratio; the error buffer
    # lets the prefill in without a learner and gives the learner that much budget besides
    prefill = max(int(5 * seconds * steps_per_update / spec.train_ratio) + 2 * spec.seq_len,
                  4 * rt.chunk_length * rt.envs_per_worker)
    chunk_steps = rt.chunk_length * rt.envs_per_worker
    shard = ray.remote(ReplayShard).options(num_cpus=0).remote(
        0, 1_000_000, rt.chunk_length, spec.seq_len, spec.train_ratio, 0,
        spec.train_ratio * (prefill + 2 * chunk_steps))
    worker = ray.remote(EnvWorker).options(num_cpus=0).remote(run.to_dict(), 0)
    collected = 0
    while collected < prefill:
        collected += ray.get(worker.collect.remote([shard], None, 60.0, max(prefill - collected, chunk_steps)))["steps"]
    ray.get(worker.flush.remote())
    ray.kill(worker)
    learner = ray.remote(Learner).options(num_cpus=1).remote(
        run.replace(runtime=rt.replace(checkpoint_interval=10 ** 9, broadcast_interval=10)).to_dict(),
        spec.observation_space, spec.action_space, "cpu", "/tmp/distwm-bench-learner")
    ray.get(learner.setup.remote())
    ray.get(learner.train.remote([shard], 2, 60.0))  # warm-up (first updates are slow)
    result = ray.get(learner.train.remote([shard], 10 ** 9, seconds))
    stats = ray.get(shard.get_stats.remote())
    for a in (learner, shard):
        ray.kill(a)
    return {"idle": result["wait_time"] / result["seconds"], "updates": result["done"],
            "updates_per_s": result["done"] / result["seconds"], "starved": result["starved"],
            "inserted": stats["inserted"], "sampled": stats["sampled"]}


def main() -> None:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    sys.path[:0] = [TESTS, ROOT]
    os.environ["PYTHONPATH"] = os.pathsep.join([TESTS, ROOT, os.environ.get("PYTHONPATH", "")])
    import ray

    run = build_run(args)
    print(f"agent {run.model} {run.agent}; {args.envs} envs per worker, chunks of {args.chunk}; "
          f"{args.seconds:g} s per figure; {args.cpus} CPUs")
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}})
    record: dict = {"setting": {"seconds": args.seconds, "cpus": args.cpus, "envs_per_worker": args.envs,
                                "chunk": args.chunk, "note": args.note,
                                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}}
    try:
        if "collect" not in args.skip:
            # the plain loop runs in a Ray worker process too, so that both sides get the
            # same scheduling priority (Ray starts workers with niceness 15)
            plain_remote = ray.remote(num_cpus=1)(plain_loop_fps)
            plain = [ray.get(plain_remote.remote(run, args.seconds))]
            fps = {}
            for workers in (1, 2):
                fps[workers] = actor_collection_fps(run, workers, args.seconds)
            plain.append(ray.get(plain_remote.remote(run, args.seconds)))
            base = float(np.mean(plain))
            print("\n== collection (env steps/s) ==")
            print(f"plain single-process loop: {base:9.1f}  (before/after: {', '.join(f'{p:.1f}' for p in plain)})")
            for workers, value in fps.items():
                print(f"{workers} EnvWorker actor(s):      {value:9.1f}  -> {value / (workers * base):.2f} "
                      f"of the plain loop per core")
            record["collect"] = {"plain": base, "plain_runs": plain,
                                 "workers": {str(w): v for w, v in fps.items()}}
        if "shard" not in args.skip:
            out = shard_throughput(args.seconds)
            print("\n== one replay shard (64x64x3 frames/s; chunks 2x64, batches 16x64) ==")
            print(f"insert: {out['insert_ray']:10.0f} via Ray   {out['insert_local']:10.0f} in process   "
                  f"{out['insert_ray_logged']:10.0f} via Ray with the durable log "
                  f"({out['insert_ray_logged'] / out['insert_ray']:.2f}x; "
                  f"{1e3 * out['log_seconds_per_chunk']:.2f} ms per chunk, {out['log_mb']:.0f} MB logged)")
            print(f"sample: {out['sample_ray']:10.0f} via Ray   {out['sample_local']:10.0f} in process   "
                  f"{out['sample_ray_logged']:10.0f} via Ray with the log")
            record["shard"] = out
        if "learner" not in args.skip:
            out = learner_idle(run, args.seconds)
            print("\n== learner at the target ratio, replay prefilled ==")
            print(f"{out['updates']} updates ({out['updates_per_s']:.2f}/s); idle {100 * out['idle']:.1f}% "
                  f"of the time waiting for data; starved={out['starved']} "
                  f"(inserted {out['inserted']}, sampled {out['sampled']})")
            record["learner"] = out
        if args.json:
            import json

            record["setting"]["load_average_1min"] = os.getloadavg()[0]
            with open(args.json, "w") as f:
                json.dump(record, f, indent=1, default=float)
            print(f"wrote {args.json}")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
