"""Scaling of the Ray runtime with the number of env workers (prints a table; no pass/fail).

Each row is one whole ``distwm.runtime`` run (a ``RunConfig`` through the runtime's
``Driver``): ``W`` env workers, each with one ``SlowSignEnv`` (``scripts/slow_env.py``: every
step sleeps ``--step-ms`` ms, as a slow simulator does, and costs next to no CPU), replay shards,
and a learner training the runtime tests' ``TinyAgent`` at a train ratio low enough for it to
keep up, so the figures measure collection. Columns:

* ``env steps/s``: env steps collected ÷ collection time (from the first collect call to the
  last chunk the driver receives: the workers' first chunk and the end of the run included);
* ``efficiency``: against linear scaling, ``env steps/s ÷ (W × env steps/s of 1 worker)``
  (the 1-worker run comes first and again last; the table shows the faster of the two);
* ``driver CPU ms/chunk``: CPU time of the driver process (``time.process_time``) ÷ chunks
  received, over the same window; ``driver CPU %``: that CPU time ÷ the window;
* ``shard inserts/s``, ``shard steps/s``: what the shards' own insert time allows (inserts and
  env steps ÷ ``insert_time`` of the summary's ``shard_stats``); ``insert wait s``: time
  inserts were held by the rate limiter (summed over inserts; workers step meanwhile);
* ``learner idle``: ``summary["learner_idle"]`` (the share of its train calls spent waiting
  for data: high here by design, where collection is the bottleneck; the detail line also
  gives it over the steady-state calls, which is what to read in a learner-bound run, e.g.
  ``--train-ratio 256 --set update_repeats=10 --set hidden=128``);
* ``MB/worker (RSS / PSS)``: mean resident memory of an env-worker process (its peak over
  the run), and its proportional share once half the steps are in (shared pages such as the
  torch libraries divided among the processes that map them: what each worker adds);
* ``start-up s``: from ``run`` to the first collect call (probe, actors started, envs and
  agents built);
* ``CPU machine / run``: CPU in use while collection runs, in % of one core, on the whole
  machine and by this run's processes (the driver and its actors); the difference is other
  work on the machine.

Usage::

    python scripts/bench_scaling.py                       # 1 2 4 8 16 32 workers, 15 ms steps
    python scripts/bench_scaling.py --quick               # 1 2 4 workers, short runs
    python scripts/bench_scaling.py --workers 1 8 32 --step-ms 10 --steps-per-worker 1024
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TESTS = os.path.join(ROOT, "tests")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, nargs="+", default=None,
                   help="env-worker counts, one run each (default 1 2 4 8 16 32; --quick: 1 2 4)")
    p.add_argument("--step-ms", type=float, default=15.0, help="wall time of one env step (sleep)")
    p.add_argument("--steps-per-worker", type=int, default=1024,
                   help="env steps each worker collects in a row's run")
    p.add_argument("--quick", action="store_true",
                   help="1 2 4 workers (unless --workers), 384 steps per worker, no second "
                        "1-worker run (a smoke test of the script)")
    p.add_argument("--chunk", type=int, default=64, help="runtime.chunk_length")
    p.add_argument("--shards", type=int, default=1, help="runtime.shards")
    p.add_argument("--train-ratio", type=float, default=2.0, help="runtime.train_ratio")
    p.add_argument("--worker-cpus", type=float, default=0.05,
                   help="runtime.worker_cpus (the workers mostly sleep)")
    p.add_argument("--cpus", type=int, default=0,
                   help="logical CPUs of the local Ray instance (0: what the largest row reserves)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the rows here (what the README's scaling table is rendered from)")
    p.add_argument("--note", default="", help="the machine's load etc., stored in --json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="RunConfig override, e.g. runtime.collect_seconds=2 or batch_size=8")
    args = p.parse_args(argv)
    if args.workers is None:
        args.workers = [1, 2, 4] if args.quick else [1, 2, 4, 8, 16, 32]
    if args.quick:
        args.steps_per_worker = min(args.steps_per_worker, 384)
    if 1 not in args.workers:
        args.workers = [1, *args.workers]  # the efficiency's reference
    args.workers = sorted(set(args.workers))
    return args


def build_run(args: argparse.Namespace, workers: int, run_dir: str):
    from distwm.configs.runtime_config import RunConfig, RuntimeConfig

    total = workers * args.steps_per_worker
    runtime = RuntimeConfig(
        workers=workers, envs_per_worker=1, shards=min(args.shards, workers),
        train_ratio=args.train_ratio, total_steps=total, chunk_length=args.chunk,
        buffer_size=max(2 * total, 1 << 16), min_fill=4 * args.chunk,
        checkpoint_interval=10 ** 9, eval_episodes=0, progress_seconds=1.0,
        worker_cpus=args.worker_cpus, learner_cpus=1.0,
        env_factory="slow_env:make_slow_env", run_dir=run_dir, verbose=False)
    run = RunConfig(model="slow_env:SlowSignConfig",
                    agent={"step_ms": args.step_ms, "batch_size": 16, "seq_len": 16,
                           "device": "cpu"},
                    runtime=runtime)
    for assignment in args.overrides:
        run = run.apply_override(assignment)
    return run.validate()


def _timed_driver():
    """The runtime's ``Driver``, noting the time and the process's CPU time of every chunk
    the workers report (nothing else changes)."""
    from distwm.runtime.driver import Driver

    class TimedDriver(Driver):
        def _loop(self) -> None:
            self.bench = {"t0": time.monotonic(), "cpu0": time.process_time(), "results": [],
                          "flushes": [], "learner": []}
            super()._loop()

        def _on_learner(self, results: list[dict[str, Any]]) -> None:
            super()._on_learner(results)
            self.bench["learner"].append((time.monotonic(), results[0]))

        def _on_worker(self, index: int, what: str, result: dict[str, Any]) -> None:
            super()._on_worker(index, what, result)
            now, cpu = time.monotonic(), time.process_time()
            if what == "flush":
                self.bench["flushes"].append(now)
            else:
                self.bench["results"].append((now, cpu, result["steps"], result))

    return TimedDriver


def _worker_memory_mb(driver, proportional: bool = False) -> list[float]:
    """Resident memory of each env-worker process, or its proportional share (PSS: shared
    pages, e.g. the torch libraries, divided among the processes that map them)."""
    import psutil

    out = []
    for (role, _), pid in list(driver.pids.items()):
        if role != "worker" or not pid:
            continue
        try:
            proc = psutil.Process(pid)
            out.append((proc.memory_full_info().pss if proportional else proc.memory_info().rss)
                       / 2 ** 20)
        except (psutil.Error, AttributeError):
            pass
    return out


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes, all cores)."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0) \
        + getattr(t, "steal", 0.0)


def _our_cpu_seconds(driver) -> dict[int, float]:
    """CPU seconds of this process and of each of the run's actors, by pid."""
    import psutil

    out = {}
    for pid in {os.getpid(), *(p for p in driver.pids.values() if p)}:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        out[pid] = t.user + t.system
    return out


def measure(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    run_dir = tempfile.mkdtemp(prefix=f"bench-scaling-{workers}w-")
    run = build_run(args, workers, run_dir)
    total = run.runtime.total_steps
    peak_rss: dict[str, float] = {"mean": 0.0, "cpu": 0.0}
    last_line = [0.0]

    load: dict[str, Any] = {}

    def on_progress(rec, driver):
        # the machine's CPU use while collection runs, once every worker and the learner
        # have reported their pids
        known = (sum(1 for role, _ in driver.pids if role == "worker") == workers
                 and ("learner", 0) in driver.pids)
        if known and rec["env_steps"] < total:
            sample = (time.monotonic(), _busy_cpu_seconds(), _our_cpu_seconds(driver))
            load.setdefault("first", sample)
            load["last"] = sample
        rss = _worker_memory_mb(driver)
        if rss:
            peak_rss["mean"] = max(peak_rss["mean"], sum(rss) / len(rss))
        if known and "pss" not in peak_rss and rec["env_steps"] >= total // 2:
            cpu = time.process_time()  # not the driver's own work: left out of its CPU time
            pss = _worker_memory_mb(driver, proportional=True)
            peak_rss["pss"] = sum(pss) / len(pss) if pss else math.nan
            peak_rss["cpu"] = time.process_time() - cpu
        now = time.monotonic()
        if now - last_line[0] >= 5.0:
            last_line[0] = now
            print(f"    {workers:2d} workers: {rec['env_steps']:7,d}/{total:,d} env steps, "
                  f"{rec['env_steps_per_s']:7.1f}/s, {rec['updates']:6,d} updates, "
                  f"{rec['elapsed']:5.1f} s", flush=True)

    t_start = time.monotonic()
    driver = _timed_driver()(run, on_progress=on_progress)
    result = driver.run()
    wall = time.monotonic() - t_start
    bench, s = driver.bench, result.summary
    results = bench["results"]
    t_end, cpu_end = results[-1][0], results[-1][1]
    window = t_end - bench["t0"]
    steps = sum(r[2] for r in results)
    chunks = steps / (run.runtime.chunk_length * run.runtime.envs_per_worker)
    per_call = [r[3] for r in results]
    worker_seconds = sum(r["seconds"] for r in per_call)
    stats = s["shard_stats"]
    insert_time = sum(st["insert_time"] for st in stats)
    inserts = sum(st["inserted"] for st in stats) / run.runtime.chunk_length
    return {
        "workers": workers, "steps": steps, "window": window, "wall": wall,
        "startup": bench["t0"] - t_start,
        "steps_per_s": steps / window,
        "driver_ms_per_chunk": 1e3 * (cpu_end - bench["cpu0"] - peak_rss["cpu"]) / chunks,
        "driver_cpu": (cpu_end - bench["cpu0"] - peak_rss["cpu"]) / window,
        "shard_inserts_per_s": inserts / insert_time if insert_time else math.nan,
        "shard_steps_per_s": s["replay_inserted"] / insert_time if insert_time else math.nan,
        "insert_wait": sum(st["insert_wait"] for st in stats),
        "learner_idle": s["learner_idle"], "updates": s["updates"],
        "replay_ratio": s["replay_ratio"],
        "rss_mb": peak_rss["mean"], "pss_mb": peak_rss.get("pss", math.nan),
        # where a worker's time goes (fractions of workers x window)
        "in_call": worker_seconds / (workers * window),
        "env": sum(r["env_time"] for r in per_call) / (workers * window),
        "act": sum(r["act_time"] for r in per_call) / (workers * window),
        "wait": sum(r["wait_time"] for r in per_call) / (workers * window),
        "calls": len(results), "first_gap_ms": 1e3 * _gaps(bench["t0"], results)[0],
        "gap_ms": 1e3 * _gaps(bench["t0"], results)[1],
        **_learner_time(bench, t_end),
        "machine_cpu": _rate(load, 1), "our_cpu": _rate(load, 2),
        "tail": t_end - min(bench["flushes"]) if bench["flushes"] else 0.0,
    }


def _learner_time(bench: dict[str, Any], t_end: float) -> dict[str, float]:
    """Fractions of the collection window the learner spent updating and waiting for data
    (the rest: between its train calls), from the train calls that ended in the window."""
    window = t_end - bench["t0"]
    calls = [r for t, r in bench["learner"] if t <= t_end]
    busy = sum(r["seconds"] - r["wait_time"] for r in calls)
    wait = sum(r["wait_time"] for r in calls)
    # steady state: the calls after the first that updated (min_fill reached) and before the
    # last in the window (the end of collection)
    first = next((i for i, r in enumerate(calls) if r["done"] > 0), len(calls))
    steady = calls[first + 1:-1]
    seconds = sum(r["seconds"] for r in steady)
    return {"learner_busy": busy / window, "learner_wait": wait / window,
            "learner_idle_steady": (sum(r["wait_time"] for r in steady) / seconds if seconds
                                    else math.nan)}


def _rate(load: dict[str, Any], i: int) -> float:
    if "first" not in load or load["last"][0] <= load["first"][0]:
        return math.nan
    first, last = load["first"][i], load["last"][i]
    if isinstance(first, dict):  # by pid: the processes seen at both ends
        first, last = (sum(d[p] for p in first.keys() & last.keys()) for d in (first, last))
    return (last - first) / (load["last"][0] - load["first"][0])


def _gaps(t0: float, results: list) -> tuple[float, float]:
    """Mean time a worker spends outside its collect calls before its first chunk (from the
    first call's submission) and between two calls (the driver's round trip, the call's start
    and end): the time between its results minus the later call's own time."""
    last: dict[int, float] = {}
    first, then = [], []
    for t, _, _, r in results:
        (then if r["worker"] in last else first).append(t - last.get(r["worker"], t0) - r["seconds"])
        last[r["worker"]] = t
    return (sum(first) / len(first) if first else 0.0, sum(then) / len(then) if then else 0.0)


HEADER = ("| workers | env steps/s | efficiency | driver CPU ms/chunk | driver CPU % | "
          "shard inserts/s | shard steps/s | insert wait s | learner idle | MB/worker (RSS / PSS) | start-up s | CPU machine / run |")


def table(rows: list[dict[str, Any]]) -> str:
    base = next(r for r in rows if r["workers"] == 1)["steps_per_s"]
    lines = [HEADER, "|" + "|".join(" --- " for _ in range(HEADER.count("|") - 1)) + "|"]
    for r in rows:
        eff = r["steps_per_s"] / (r["workers"] * base)
        lines.append(
            f"| {r['workers']} | {r['steps_per_s']:.0f} | {eff:.2f} | "
            f"{r['driver_ms_per_chunk']:.2f} | {100 * r['driver_cpu']:.1f} | "
            f"{r['shard_inserts_per_s']:.0f} | {r['shard_steps_per_s']:.0f} | "
            f"{r['insert_wait']:.1f} | {100 * r['learner_idle']:.0f}% | {r['rss_mb']:.0f} / {r['pss_mb']:.0f} | "
            f"{r['startup']:.0f} | "
            f"{100 * r['machine_cpu']:.0f}% / {100 * r['our_cpu']:.0f}% |")
    return "\n".join(lines)


def detail(r: dict[str, Any]) -> str:
    return (f"    {r['workers']} workers: {r['steps']:,d} steps in {r['window']:.1f} s "
            f"({r['wall']:.0f} s with start-up and report), {r['calls']} collect calls, {r['first_gap_ms']:.0f} ms to the first, "
            f"{r['gap_ms']:.0f} ms between calls; "
            f"worker time: {100 * r['in_call']:.0f}% in calls, {100 * r['env']:.0f}% env, "
            f"{100 * r['act']:.1f}% act, {100 * r['wait']:.1f}% waiting for inserts; "
            f"tail {r['tail']:.1f} s; {r['updates']:,d} updates, ratio {r['replay_ratio']:.2f}, "
            f"learner {100 * r['learner_busy']:.0f}% updating, {100 * r['learner_wait']:.0f}% "
            f"waiting for data ({100 * r['learner_idle_steady']:.0f}% of its steady-state calls); "
            f"CPU in use while collecting: {100 * r['machine_cpu']:.0f}% of one core on the "
            f"machine, {100 * r['our_cpu']:.0f}% by this run")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    sys.path[:0] = [HERE, TESTS, ROOT]
    pythonpath = os.pathsep.join([HERE, TESTS, ROOT, os.environ.get("PYTHONPATH", "")])
    os.environ["PYTHONPATH"] = pythonpath
    import ray

    largest = max(args.workers)
    cpus = args.cpus or max(os.cpu_count() or 1, math.ceil(1.0 + largest * args.worker_cpus) + 1)
    print(f"bench_scaling: {args.workers} env workers x 1 SlowSignEnv ({args.step_ms:g} ms/step), "
          f"{args.steps_per_worker} env steps per worker, chunks of {args.chunk}, "
          f"{args.shards} shard(s), train ratio {args.train_ratio:g}, worker_cpus "
          f"{args.worker_cpus:g}; Ray with {cpus} logical CPUs on {os.cpu_count()} cores")
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    rows = []
    # the 1-worker reference runs first and again last: the faster of the two is the
    # reference (a machine shared with other work slows one of them down now and then)
    plan = args.workers + ([1] if len(args.workers) > 1 and not args.quick else [])
    try:
        for workers in plan:
            print(f"  run with {workers} workers ...", flush=True)
            row = measure(args, workers)
            print(detail(row), flush=True)
            ref = next((r for r in rows if r["workers"] == workers), None)
            if ref is None:
                rows.append(row)
            elif row["steps_per_s"] > ref["steps_per_s"]:
                rows[rows.index(ref)] = row
    finally:
        ray.shutdown()
    print()
    print(table(rows))
    if args.json:
        import json

        setting = {k: v for k, v in vars(args).items() if k not in ("json",)}
        setting.update(ray_cpus=cpus, cores=os.cpu_count())
        with open(args.json, "w") as f:
            json.dump({"setting": setting, "table": table(rows), "rows": rows}, f, indent=1, default=str)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
