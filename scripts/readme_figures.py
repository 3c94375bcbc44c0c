#!/usr/bin/env python
"""The README's benchmark figures, rendered from the JSON files the benchmark scripts wrote.

Every figure between a ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` marker pair
in README.md is produced here from files under ``docs/benchmarks/`` (written by
``bench_dreamer_learning.py`` and ``bench_dreamer_update.py``) and from the published DreamerV3
curves (all seeds of ``../shared/reference/dreamerv3_curves``); ``tests/test_readme_figures.py``
checks that the README holds exactly what this script renders.

    python scripts/readme_figures.py            # print the blocks
    python scripts/readme_figures.py --write    # rewrite them in README.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "docs", "benchmarks")
#: the DMC cartpole-balance seeds run with the fixes on and off (a seed shows once both files exist)
BALANCE_SEEDS = range(20)
#: the DMC cartpole-balance seeds run with the fixes on except the initialisation (PyTorch's)
#: that were not picked for their results (seeds 2, 5 and 8 were picked for a low fixes-on score)
TORCHINIT_SEEDS = (0, 1, 3, 4, 10, 11, 12, 13, 14, 15)

#: The learning runs the README quotes: (json file, setting in words). The JSON names its task,
#: config, wall time, updates and evaluation history.
LEARNING_RUNS = [
    ("dreamer_cartpole_seed0.json", "CartPole-v1, state obs, the script's `CARTPOLE` preset, seed 0 (this code)"),
    ("dreamer_cartpole_before_seed0.json", "the same, the code before issue 12 (run at commit 644ed9c)"),
    ("dreamer_cartpole_seed1.json", "the same preset, seed 1 (this code)"),
    ("dreamer_cartpole_fixesoff_seed0.json", "the same, seed 0, the fixes off (`--set action_clip=0 --set actor_baseline=false --set weight_init=torch`; 1 torch thread)"),
    ("dreamer_cartpole_fixesoff_seed1.json", "the same, seed 1, the fixes off (`--set action_clip=0 --set actor_baseline=false --set weight_init=torch`)"),
    ("dreamer_cartpole_before_seed1.json", "the same, seed 1, the code before issue 12 (commit 4103ac7)"),
    ("dreamer_cartpole_seed2.json", "the same preset, seed 2 (this code)"),
    ("dreamer_cartpole_fixesoff_seed2.json", "the same, seed 2, the fixes off"),
    ("dreamer_cartpole_seed3.json", "the same preset, seed 3 (this code, 1 torch thread)"),
    ("dreamer_cartpole_seed4.json", "the same preset, seed 4 (this code, 1 torch thread)"),
    ("dreamer_cartpole_bf16_seed0.json", "the same preset, seed 0, `--set autocast=bf16` (1 torch thread; AMD Zen 4 with AVX512-BF16)"),
    *[(f"dreamer_cartpole_bf16_seed{seed}.json", f"the same preset, seed {seed}, `--set autocast=bf16` (1 torch thread; AMD Zen 4)")
      for seed in (1, 2)],
    ("dreamer_cartpole_fixesoff_seed3.json", "the same, seed 3, the fixes off (1 torch thread)"),
    ("dreamer_cartpole_fixesoff_seed4.json", "the same, seed 4, the fixes off (1 torch thread)"),
    ("dreamer_dmc-cartpole-balance_seed0.json", "DMC cartpole-balance (proprio, action repeat 2), the script's `DMC` preset (train ratio 64), seed 0 (this code)"),
    ("dreamer_dmc-cartpole-balance_before_seed0.json", "the same, the code before issue 12 (commit 4030b5e)"),
    ("dreamer_dmc-cartpole-balance_seed1.json", "the same preset, seed 1, the script's default budget (30k env steps; this code)"),
    ("dreamer_dmc-cartpole-balance_fixesoff_seed0.json", "the same, seed 0, 30k env steps, the fixes off (1 torch thread)"),
    ("dreamer_dmc-cartpole-balance_seed2.json", "the same preset, seed 2, 30k env steps (this code, 1 torch thread)"),
    ("dreamer_dmc-cartpole-balance_fixesoff_seed2.json", "the same, seed 2, 30k env steps, the fixes off (1 torch thread)"),
    ("dreamer_dmc-cartpole-balance_seed3.json", "the same preset, seed 3, 30k env steps (this code, 1 torch thread)"),
    ("dreamer_dmc-cartpole-balance_fixesoff_seed3.json", "the same, seed 3, 30k env steps, the fixes off (1 torch thread)"),
    ("dreamer_dmc-cartpole-balance_fixesoff_seed1.json", "the same, seed 1, 30k env steps, the fixes off (`--set action_clip=0 --set actor_baseline=false --set weight_init=torch`)"),
    *[(f"dreamer_dmc-cartpole-balance{kind}_seed{seed}.json",
       f"the same, seed {seed}, 30k env steps, the fixes {'off' if kind else 'on'} (1 torch thread)")
      for seed in range(4, BALANCE_SEEDS.stop) for kind in ("", "_fixesoff")],
    ("dreamer_dmc-cartpole-balance_nobaseline_seed2.json", "the same, seed 2, 30k env steps, the fixes on except the `-(R - V)/S` baseline (`--set actor_baseline=false`; 1 torch thread)"),
    *[(f"dreamer_dmc-cartpole-balance_torchinit_seed{seed}.json", f"the same, seed {seed}, 30k env steps, the fixes on except the initialisation (PyTorch's, `--set weight_init=torch`; 1 torch thread)")
      for seed in sorted({2, 5, 8, *TORCHINIT_SEEDS})],
    *[(f"dreamer_dmc-cartpole-balance_rerun_seed{seed}.json", f"the same, seed {seed}, 30k env steps, the fixes on: a second run of the same code and seed (1 torch thread; CPU kernels do not give bit-identical results from run to run)")
      for seed in (14, 15)],
    ("dreamer_dmc-cartpole-balance_ratio128_seed0.json", "DMC cartpole-balance, `--set train_ratio=128`, the code before issue 12 (commit 6ffde7f; not re-run)"),
    ("dreamer_dmc-cartpole-swingup_seed0.json", "DMC cartpole-swingup, the `DMC` preset, seed 0, V3 with the issue-12 fixes (actions into the dynamics scaled by 1/max(1, abs(a)), the `-(R - V)/S` objective, truncated-normal init)"),
    ("dreamer_dmc-cartpole-swingup_before_seed0.json", "the same with the fixes off (`--set action_clip=0 --set actor_baseline=false --set weight_init=torch`: the V3 code before)"),
]


def _load(name: str) -> dict:
    with open(os.path.join(BENCH, name)) as f:
        return json.load(f)


def _task_preset(task: str) -> dict:
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from bench_dreamer_learning import TASKS

    return TASKS[task][0]


def _k(steps: float) -> str:
    return f"{steps / 1000:g}k"


def published_at(task: str, frames: list[float]) -> str:
    """``published DreamerV3 (N seeds) at 10k a-b, ...`` from every seed of the reference."""
    from distwm.benchmarks.reference import load_published_curves

    name = "dmc_" + task.replace("dmc-", "").replace("-", "_")
    curves = [c for c in load_published_curves("dmc_proprio") if c["task"] == name]
    parts = []
    for frame in frames:
        ys = [c["ys"][c["xs"].index(frame)] for c in curves if frame in c["xs"]]
        if ys:
            parts.append(f"{_k(frame)} {min(ys):.0f}-{max(ys):.0f}")
    return f"published DreamerV3 ({len(curves)} seeds) at the same frames: " + ", ".join(parts)


def learning_row(name: str, setting: str) -> str:
    run = _load(name)
    history = run["eval_history"]
    returns = [r for _, r in history]
    episodes = run["config"].get("eval_episodes") or _task_preset(run["task"])["eval_episodes"]
    reached = run["first_step_at_target"]
    target = run["target"]
    last = returns[-4:]
    result = (f"{_k(run['env_steps'])} env steps in {run['wall_time_s'] / 60:.1f} min wall, "
              f"{run['updates']} updates; mean eval return ({episodes} episodes) "
              + (f"first >= {target:g} at {_k(reached)}" if reached is not None
                 else f"never reached the script's target {target:g}")
              + f"; best {max(returns):.0f}, final {returns[-1]:.0f}, mean of the last "
              f"{len(last)} evaluations {sum(last) / len(last):.0f}")
    if run["task"].startswith("dmc-"):
        ours = ", ".join(f"{_k(x)} {y:.0f}" for x, y in history if x % 10000 == 0)
        frames = [x for x, _ in history if x % 10000 == 0]
        result += f"; at 10k-frame marks: {ours}; {published_at(run['task'], frames)}"
    png = name.replace(".json", ".png")
    links = f"[json](docs/benchmarks/{name})"
    if os.path.isfile(os.path.join(BENCH, png)):
        links = f"[curve](docs/benchmarks/{png}), " + links
    return f"| `{run['task']}` | {setting} | {result} ({links}) |"


def block_dreamer_learning() -> str:
    rows = ["| task | setting | result |", "| --- | --- | --- |"]
    rows += [learning_row(name, setting) for name, setting in LEARNING_RUNS
             if os.path.isfile(os.path.join(BENCH, name))]
    return "\n".join(rows) + "\n\n" + before_after_table() + "\n\n" + paired_table()


#: (task, runs with the issue-12 fixes, runs without them: the code before or the fixes off)
BEFORE_AFTER = [
    ("CartPole-v1", ["dreamer_cartpole_seed0.json", "dreamer_cartpole_seed1.json",
                     "dreamer_cartpole_seed2.json", "dreamer_cartpole_seed3.json",
                     "dreamer_cartpole_seed4.json"],
     ["dreamer_cartpole_before_seed0.json", "dreamer_cartpole_before_seed1.json",
      "dreamer_cartpole_fixesoff_seed0.json", "dreamer_cartpole_fixesoff_seed1.json", "dreamer_cartpole_fixesoff_seed2.json",
      "dreamer_cartpole_fixesoff_seed3.json", "dreamer_cartpole_fixesoff_seed4.json"]),
    ("DMC cartpole-balance", [f"dreamer_dmc-cartpole-balance_seed{seed}.json" for seed in BALANCE_SEEDS],
     ["dreamer_dmc-cartpole-balance_before_seed0.json",
      *[f"dreamer_dmc-cartpole-balance_fixesoff_seed{seed}.json" for seed in BALANCE_SEEDS]]),
    ("DMC cartpole-swingup", ["dreamer_dmc-cartpole-swingup_seed0.json"],
     ["dreamer_dmc-cartpole-swingup_before_seed0.json"]),
]


def _runs(names: list[str]) -> list[dict]:
    return [_load(n) for n in names if os.path.isfile(os.path.join(BENCH, n))]


def _summary(runs: list[dict], budget: float) -> str:
    """Each run's evaluation at ``budget`` env steps (the last at or before it) and the mean of
    its last 4 evaluations up to there; their means over the runs."""
    if not runs:
        return "-"
    upto = [[y for x, y in r["eval_history"] if x <= budget] for r in runs]
    finals = [ys[-1] for ys in upto]
    last4 = [sum(ys[-4:]) / len(ys[-4:]) for ys in upto]
    seeds = ", ".join(str(r["config"]["seed"]) for r in runs)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return (f"{len(runs)} run(s) (seeds {seeds}): at {_k(budget)} {mean(finals):.0f} "
            f"({', '.join(f'{x:.0f}' for x in finals)}), last 4 evaluations "
            f"{mean(last4):.0f} ({', '.join(f'{x:.0f}' for x in last4)})")


_FIXES = ("the same code and seeds with the fixes on and off", "fixes on", "fixes off", "on - off")
_INIT = ("the same code and seeds with every fix on, with the reference's truncated-normal "
         "initialisation and with PyTorch's (`--set weight_init=torch`; seeds not picked for "
         "their results)", "reference init", "PyTorch's init", "reference - PyTorch's")
#: (task, runs A, runs B, seeds, (what is compared, label A, label B, label A - B)): the same code
#: on the same seeds (a ``{}`` in a name is the seed; seeds without both files are left out)
PAIRED = [("CartPole-v1", "dreamer_cartpole_seed{}.json", "dreamer_cartpole_fixesoff_seed{}.json",
           range(10), _FIXES),
          ("DMC cartpole-balance", "dreamer_dmc-cartpole-balance_seed{}.json",
           "dreamer_dmc-cartpole-balance_fixesoff_seed{}.json", BALANCE_SEEDS, _FIXES),
          ("DMC cartpole-balance", "dreamer_dmc-cartpole-balance_seed{}.json",
           "dreamer_dmc-cartpole-balance_torchinit_seed{}.json", TORCHINIT_SEEDS, _INIT)]


def _curve_figures(run: dict, budget: float) -> tuple[float, float, float]:
    """Up to ``budget`` env steps: (mean of every evaluation, mean of the last half of them, the
    final one)."""
    ys = [y for x, y in run["eval_history"] if x <= budget]
    half = ys[len(ys) // 2:]
    return sum(ys) / len(ys), sum(half) / len(half), ys[-1]


def paired_table() -> str:
    """Per task and seed, the same code in two settings (the fixes on and off, or one fix
    swapped), up to the budget both runs of the seed reached: each run's mean evaluation return
    over the whole run (the area under its curve), over its second half, and its final one; the paired differences' mean with a
    95% bootstrap CI."""
    from distwm.benchmarks.metrics import bootstrap_ci

    out = []
    for task, on_name, off_name, seeds, (compared, label_a, label_b, label_diff) in PAIRED:
        pairs = [(seed, _load(on_name.format(seed)), _load(off_name.format(seed))) for seed in seeds
                 if all(os.path.isfile(os.path.join(BENCH, n.format(seed))) for n in (on_name, off_name))]
        if not pairs:
            continue
        rows = [f"{task}, {compared} (mean evaluation return over the whole run / over its second "
                "half / the final evaluation, up to the budget both runs of a seed reached):", "",
                f"| seed | budget | {label_a} | {label_b} | {label_diff} |", "| --- | --- | --- | --- | --- |"]
        diffs = []
        for seed, on, off in pairs:
            budget = min(on["eval_history"][-1][0], off["eval_history"][-1][0])
            a, b = _curve_figures(on, budget), _curve_figures(off, budget)
            diffs.append([x - y for x, y in zip(a, b)])
            rows.append(f"| {seed} | {_k(budget)} | {' / '.join(f'{x:.0f}' for x in a)} | "
                        f"{' / '.join(f'{x:.0f}' for x in b)} | "
                        f"{' / '.join(f'{x:+.0f}' for x in diffs[-1])} |")
        cis = []
        for k in range(3):
            col = [d[k] for d in diffs]
            low, high = bootstrap_ci(col)
            cis.append(f"{sum(col) / len(col):+.0f} [{low:+.0f}, {high:+.0f}]")
        rows.append(f"| mean of the differences [95% bootstrap CI] | | | | {' / '.join(cis)} |")
        out.append("\n".join(rows))
    return "\n\n".join(out)


def before_after_table() -> str:
    """Per task, at the budget every run reached: the mean evaluation return with and without
    the fixes (and the mean of each run's last 4 evaluations)."""
    rows = ["| task | budget (env steps every run reached) | with the issue-12 fixes | "
            "without (the code before, or the fixes off) |", "| --- | --- | --- | --- |"]
    for task, after, before in BEFORE_AFTER:
        with_fixes, without = _runs(after), _runs(before)
        if not with_fixes and not without:
            continue
        budget = min(r["eval_history"][-1][0] for r in with_fixes + without)
        rows.append(f"| {task} | {_k(budget)} | {_summary(with_fixes, budget)} | "
                    f"{_summary(without, budget)} |")
    return "\n".join(rows)


#: the update-speed runs, each a ``bench_dreamer_update.py --json`` file: without and with
#: ``keep_freed_memory`` (process-wide, so one run each)
SPEED_RUNS = ("dreamer_update_speed_nokeep.json", "dreamer_update_speed.json")
_SWITCHES = {"compile": "`compile: {}`", "autocast": "`autocast: {}`",
             "channels_last": "`channels_last: {}`", "observe_threads": "`observe_threads: {}`",
             "imagine_split": "`imagine_split: {}`", "defer_weight_grads": "`defer_weight_grads: {}`"}


def _speed_label(fields: dict) -> str:
    if fields in ({"observe_threads": 0}, {"observe_threads": 0, "imagine_split": 1},
                  {"observe_threads": 0, "imagine_split": 1, "defer_weight_grads": False}):
        return "distwm `baseline` (every switch off)"
    if not fields:
        return "distwm defaults (`observe_threads: 1`, `imagine_split: 2`, `defer_weight_grads: true`)"
    if fields == {"imagine_split": 1}:
        return "distwm defaults less `imagine_split` (`imagine_split: 1`)"
    if fields == {"defer_weight_grads": False}:
        return "distwm defaults less `defer_weight_grads` (`defer_weight_grads: false`)"
    return "distwm defaults + " + " + ".join(_SWITCHES[k].format(v) for k, v in fields.items())


def block_dreamer_speed() -> str:
    """The update-speed tables of ``bench_dreamer_update.py --json`` (one per run)."""
    out = []
    for name in SPEED_RUNS:
        if not os.path.isfile(os.path.join(BENCH, name)):
            continue
        run = _load(name)
        setting, learners = run["setting"], run["learners"]
        keep = "on" if setting.get("keep_freed_memory") else "off"
        rows = [f"`keep_freed_memory: {keep}` (the whole process, RLlib's learner too):", "",
                "| learner | s/update wall | s/update CPU | ratio wall | ratio CPU |",
                "| --- | --- | --- | --- | --- |"]
        for learner, m in learners.items():
            label = ("RLlib 2.60 DreamerV3 (torch, XS)" if learner == "rllib"
                     else _speed_label(run["variants"].get(learner, {})))
            rows.append(f"| {label} | {m['wall_s']:.3f} | {m['cpu_s']:.3f} | {m['ratio_wall']:.2f}x "
                        f"| {m['ratio_cpu']:.2f}x |")
        params = run["parameters"]
        rows.append("")
        rows.append(f"Medians of {setting['updates']} updates after {setting['warmup']} warm-up updates per "
                    f"learner, B={setting['batch_size']} T={setting['seq_len']}, {setting['threads']} torch "
                    f"threads, {setting['cpus']} CPUs, torch {setting['torch']}, OMP_WAIT_POLICY="
                    f"{setting['omp_wait_policy'] or 'unset'}, 1-minute load average "
                    f"{setting['load_average_1min']:.1f} at the end ({setting['note'] or 'no note'}); "
                    f"parameters: RLlib {params['rllib'] / 1e6:.2f}M, distwm {params['distwm'] / 1e6:.2f}M "
                    f"(world model, actor, critic and slow critic) ([json](docs/benchmarks/{name})).")
        out.append("\n".join(rows))
    return "\n\n".join(out)


MAIN_JOB = "quickstart_summary.json"


def block_main_job() -> str:
    """The main job's run, from the ``summary.json`` it wrote (copied to docs/benchmarks)."""
    run = _load(MAIN_JOB)
    final, best = run["final_eval"], run["best_eval"]
    return (f"A run of it here ({run.get('note') or '2 cores, nothing else running'}) took "
            f"{run['seconds'] / 60:.1f} minutes: {run['env_steps']:,d} env steps, "
            f"{run['updates']:,d} updates at a measured replay ratio of {run['replay_ratio']:.1f} "
            f"(target {run['target_ratio']:g}); evaluation return {final['return_mean']:.0f} at the "
            f"end ({len(final['returns'])} episodes), best {best['return']:.0f} at "
            f"{best['step']:,d} steps ([summary](docs/benchmarks/{MAIN_JOB})).")


RUNTIME = "runtime_figures.json"


def block_runtime() -> str:
    """``bench_runtime.py --json``: collection, one shard, the learner's idle time."""
    run = _load(RUNTIME)
    setting, collect, shard, learner = run["setting"], run["collect"], run["shard"], run["learner"]
    base = collect["plain"]
    one, two = collect["workers"]["1"], collect["workers"]["2"]
    return (f"Runtime figures on this machine (`OMP_WAIT_POLICY=PASSIVE python scripts/bench_runtime.py "
            f"--seconds {setting['seconds']:g}`, {setting['cpus']} CPUs, {setting['note'] or 'no note'}): "
            f"collection with 1 EnvWorker actor {one / base:.2f} of a plain single-process loop, with "
            f"2 actors {two / (2 * base):.2f} per core ({base:,.0f} steps/s plain; the driver, shard and "
            f"learner share the cores); one shard {shard['insert_ray'] / 1e3:.1f}k inserted and "
            f"{shard['sample_ray'] / 1e3:.1f}k sampled 64x64x3 frames/s through Ray (with the durable "
            f"log: {shard['insert_ray_logged'] / 1e3:.1f}k / {shard['sample_ray_logged'] / 1e3:.1f}k); the "
            f"learner at the target ratio with replay prefilled waits {100 * learner['idle']:.1f}% of "
            f"its time for data ([json](docs/benchmarks/{RUNTIME})).")


SCALING = "scaling.json"


def block_scaling() -> str:
    """``bench_scaling.py --json``: its own table and the setting it ran with."""
    run = _load(SCALING)
    s = run["setting"]
    base = next(r for r in run["rows"] if r["workers"] == 1)["steps_per_s"]
    return (f"`python scripts/bench_scaling.py --workers {' '.join(map(str, s['workers']))} --step-ms "
            f"{s['step_ms']:g} --steps-per-worker {s['steps_per_worker']}` ({s['cores']} cores, Ray with "
            f"{s['ray_cpus']} logical CPUs, `worker_cpus` {s['worker_cpus']:g}, "
            f"{s.get('note') or 'no note'}; the 1-worker rate is {base:.0f} steps/s):\n\n"
            f"{run['table']}\n\n([json](docs/benchmarks/{SCALING}))")


BLOCKS = {"dreamer-learning": block_dreamer_learning, "dreamer-speed": block_dreamer_speed,
          "main-job": block_main_job, "runtime": block_runtime, "scaling": block_scaling}


def render(name: str) -> str:
    return f"<!-- figures:{name} -->\n{BLOCKS[name]()}\n<!-- /figures:{name} -->"


def readme_blocks(text: str) -> dict[str, str]:
    """``{name: whole block}`` of every marker pair in ``text``."""
    pattern = re.compile(r"<!-- figures:([\w-]+) -->\n(?:.*?\n)?<!-- /figures:\1 -->", re.S)
    return {m.group(1): m.group(0) for m in pattern.finditer(text)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the blocks in README.md")
    args = parser.parse_args(argv)
    path = os.path.join(ROOT, "README.md")
    text = open(path).read()
    found = readme_blocks(text)
    for name in BLOCKS:
        block = render(name)
        if args.write:
            if name not in found:
                raise SystemExit(f"README.md has no <!-- figures:{name} --> block")
            text = text.replace(found[name], block)
        else:
            print(block)
    if args.write:
        with open(path, "w") as f:
            f.write(text)
        print(f"rewrote {', '.join(BLOCKS)} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
