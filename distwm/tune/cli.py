"""The ``distwm sweep``, ``distwm report`` and ``distwm submit`` subcommands.

``distwm.cli`` calls ``add_sweep_parser``, ``add_report_parser`` and ``add_submit_parser``;
each registers its subcommand with a ``func(args) -> exit code``. Heavy imports (ray, torch,
matplotlib) happen inside the commands.
"""

from __future__ import annotations

import argparse
import functools
import sys

__all__ = ["add_sweep_parser", "add_report_parser", "add_submit_parser"]


#: exit status of a sweep stopped by Ctrl-C (128 + SIGINT, as shells report it)
INTERRUPTED = 130


def _sweep_to_run(args: argparse.Namespace) -> tuple[object, str | None]:
    """``(sweep config or None, experiment path to resume or None)`` from the arguments."""
    import os

    from distwm.tune.data_sweep import load_sweep_file

    resume, config = args.resume, args.config
    if isinstance(resume, str) and os.path.isfile(os.path.expanduser(resume)) and config is None:
        config, resume = resume, True  # `--resume sweep.yaml`: the YAML names the experiment
    if isinstance(resume, str):
        if config is not None:
            raise ValueError(f"give the sweep YAML ({config}) or --resume EXPERIMENT ({resume}), "
                             "not both")
        if args.name or args.storage_path:
            raise ValueError("--name and --storage-path do not apply to --resume EXPERIMENT "
                             "(the directory names the sweep)")
        return None, resume
    if config is None:
        raise ValueError("give the sweep YAML (e.g. tune_configs/quickstart.yaml), or "
                         "--resume <experiment directory> to continue a sweep")
    sweep = load_sweep_file(config)  # an RL sweep, or `kind: dataset-trained`
    overrides = {}
    if args.name:
        overrides["name"] = args.name
    if args.storage_path:
        overrides["tune"] = {**sweep.tune.to_dict(), "storage_path": args.storage_path}
    if overrides:
        sweep = type(sweep).from_dict({**sweep.to_dict(), **overrides})
    return sweep, (sweep.experiment_path() if resume else None)


def _continue_hint(path: str) -> str:
    return f"Continue it with:  distwm sweep --resume {path}"


def _cmd_sweep(args: argparse.Namespace) -> int:
    from distwm.tune import data_sweep
    from distwm.tune.sweep import resume_sweep, run_sweep
    from distwm.utils.tables import format_table

    sweep, resume_path = _sweep_to_run(args)
    fit = False if args.no_fit_check else None
    echo = functools.partial(_say, "distwm sweep: ")
    if sweep is None and data_sweep.saved_sweep_kind(resume_path) == data_sweep.DATASET_TRAINED:
        resume_sweep = data_sweep.resume_data_sweep
    if isinstance(sweep, data_sweep.DataSweepConfig):
        run_sweep = data_sweep.run_data_sweep
        path = sweep.experiment_path()
        echo(sweep.describe() + f" -> {path}" + (" (resuming)" if resume_path else ""))
    elif sweep is not None:
        path = sweep.experiment_path()
        echo(f"{sweep.name}: {sweep.num_grid_trials()} trials ({len(sweep.agents)} agents x "
             f"{len(sweep.games)} games x {len(sweep.seeds)} seeds"
             + (f", search over {', '.join(sweep.search)}" if sweep.search else "")
             + f") -> {path}" + (" (resuming)" if resume_path else ""))
    else:
        path = resume_path
        echo(f"resuming the sweep at {path}")
    try:
        if sweep is None:
            outcome = resume_sweep(path, address=args.address, fit_to_cluster=fit, echo=echo)
        else:
            outcome = run_sweep(sweep, address=args.address, resume=bool(resume_path),
                                fit_to_cluster=fit, echo=echo)
    except KeyboardInterrupt:
        _interrupted(path, None)
        return INTERRUPTED
    print(format_table(outcome.HEADERS, outcome.table_rows()))
    print(f"\nResults: {outcome.path}\nReport:  distwm report {outcome.path}", flush=True)
    if outcome.num_unfinished:
        _interrupted(outcome.path, outcome)
        return INTERRUPTED
    if outcome.num_errors:
        print(f"{outcome.num_errors} trial(s) failed. {_continue_hint(outcome.path)} (errored "
              "trials restart from their last checkpoints)", file=sys.stderr, flush=True)
        return 1
    return 0


def _say(prefix: str, line: str) -> None:
    print(prefix + line, flush=True)


def _interrupted(path: str, outcome: object | None) -> None:
    """Say that the sweep was stopped and how to continue it."""
    from ray import tune

    try:
        saved = tune.Tuner.can_restore(path)
    except Exception:  # an unreachable bucket: say what we can
        saved = False
    if outcome is not None:
        what = (f"{outcome.num_unfinished} of {len(outcome.rows)} trials unfinished; "
                "their state is saved.")
    else:
        what = "its state is saved." if saved else "nothing was saved yet."
    hint = _continue_hint(path) if saved else "Start it again with the same command."
    print(f"\ndistwm sweep: interrupted (Ctrl-C): {what}\n{hint}", file=sys.stderr, flush=True)


def add_sweep_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep", help="run a sweep (agents x games x seeds, or a dataset-trained model's data "
        "sets x seeds) with Ray Tune",
        description="Run tune_configs/X.yaml: every trial is one distributed training run (a "
        "Ray Train run for `kind: dataset-trained`). "
        "Results go to <tune.storage_path>/<name>; `distwm report` aggregates them. Each trial "
        "is sized to the cluster before Tune starts; Ctrl-C stops the sweep (exit status 130) "
        "and `distwm sweep --resume <experiment>` continues it.",
        usage="distwm sweep CONFIG [options] | distwm sweep --resume EXPERIMENT [options]")
    p.add_argument("config", nargs="?", default=None,
                   help="sweep YAML, e.g. tune_configs/quickstart.yaml")
    p.add_argument("--address", default=None,
                   help="Ray address ('auto': the running cluster; default: $RAY_ADDRESS or a "
                   "new local instance)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="EXPERIMENT",
                   help="continue an interrupted sweep (Tuner.restore): its experiment directory "
                   "(<tune.storage_path>/<name>, as the sweep printed), or with CONFIG the sweep "
                   "that YAML names")
    p.add_argument("--no-fit-check", action="store_true",
                   help="do not size trials to the cluster nor stop when one cannot fit "
                   "(tune.fit_to_cluster: false), e.g. on an autoscaling cluster whose nodes "
                   "have not started yet")
    p.add_argument("--name", default=None, help="override the sweep's name")
    p.add_argument("--storage-path", default=None, help="override tune.storage_path")
    p.set_defaults(func=_cmd_sweep)


def _cmd_report(args: argparse.Namespace) -> int:
    import os

    from distwm.tune.data_sweep import DATASET_TRAINED, saved_sweep_kind
    from distwm.tune.sweep_report import build_sweep_report, export_gauges

    if saved_sweep_kind(args.results_dir) == DATASET_TRAINED:
        return _cmd_data_report(args)
    compare = None
    if args.compare is not None:
        compare = [a.strip() for a in args.compare.split(",") if a.strip()]
    result = build_sweep_report(args.results_dir, compare=compare, out_dir=args.out,
                                num_samples=args.num_samples, seed=args.seed,
                                matched_budget=args.matched_budget)
    print(result["markdown"], flush=True)
    print("Files: " + ", ".join(sorted(result["paths"].values())), flush=True)
    if not args.no_gauges and (args.address or os.environ.get("RAY_ADDRESS")):
        try:
            count = export_gauges(result["report"], args.address)
        except Exception as exc:  # the report stands without the dashboard
            print(f"distwm report: could not export gauges to Ray: {exc}", file=sys.stderr)
        else:
            print(f"Exported {count} values as the Ray gauge distwm_report_aggregate "
                  "(dashboard metrics view)", flush=True)
    return 0


def _cmd_data_report(args: argparse.Namespace) -> int:
    """``distwm report`` of a sweep of a dataset-trained model (no published agents, no gauges)."""
    from distwm.tune.data_sweep_report import build_data_sweep_report

    if args.compare:
        raise ValueError(f"--compare {args.compare}: {args.results_dir} is a sweep of a "
                         "dataset-trained model; there are no published agents to compare with")
    result = build_data_sweep_report(args.results_dir, out_dir=args.out,
                                     num_samples=args.num_samples, seed=args.seed)
    print(result["markdown"], flush=True)
    print("Files: " + ", ".join(sorted(result["paths"].values())), flush=True)
    return 0


def add_report_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="aggregate a sweep: IQM/median/mean/optimality gap with CIs, plots",
        description="Aggregate the sweep at RESULTS_DIR (<tune.storage_path>/<name>) into "
        "markdown, CSV and LaTeX tables and PNG plots, beside published agents when the "
        "sweep's suite has them. A sweep of a dataset-trained model gets its metric's mean, std "
        "and bootstrap CI over seeds per data set and search point (markdown and CSV).")
    p.add_argument("results_dir", help="the sweep's results directory (local path or URI)")
    p.add_argument("--compare", default=None,
                   help="published agents to put beside, e.g. DreamerV3,IRIS,DIAMOND "
                   "(default: the sweep's `compare`; '' for none)")
    p.add_argument("--matched-budget", action=argparse.BooleanOptionalAction, default=True,
                   help="beside the published final scores, also show published curves at the "
                   "sweep's budget in env frames (agent steps x action repeat) when it is "
                   "shorter than the published runs (default: on)")
    p.add_argument("--out", default=None, help="output directory (default RESULTS_DIR/report)")
    p.add_argument("--num-samples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--address", default=None,
                   help="Ray address to export the headline gauges to (default: $RAY_ADDRESS)")
    p.add_argument("--no-gauges", action="store_true", help="do not export Ray gauges")
    p.set_defaults(func=_cmd_report)


def _cmd_submit(args: argparse.Namespace) -> int:
    from distwm.tune.submit import submit_job

    command = list(args.job_command)
    if command and command[0] == "--":
        command = command[1:]
    try:
        outcome = submit_job(
            command,
            address=args.address,
            working_dir=None if args.no_working_dir else args.working_dir,
            runtime_env=args.runtime_env_json,
            submission_id=args.submission_id,
            entrypoint_num_cpus=args.entrypoint_num_cpus,
            wait=not args.no_wait,
        )
    except ConnectionError as exc:
        print(f"distwm submit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return outcome.exit_code


def add_submit_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "submit",
        help="run a command as a Ray job on a cluster (ray job submit)",
        description="Submit `<command...>` as a Ray job with this checkout as its working "
        "directory, stream its logs and exit with its status (0: SUCCEEDED).",
        usage="distwm submit [options] -- <command...>",
    )
    p.add_argument("--address", default=None,
                   help="Jobs API address (default: $RAY_ADDRESS or http://127.0.0.1:8265)")
    p.add_argument("--working-dir", default=".",
                   help="directory uploaded as the job's working directory (default: .)")
    p.add_argument("--no-working-dir", action="store_true",
                   help="upload nothing (the code is already on the cluster, e.g. in the image)")
    p.add_argument("--runtime-env-json", default=None,
                   help='extra runtime env as JSON, e.g. \'{"env_vars": {"WANDB_MODE": "online"}}\'')
    p.add_argument("--submission-id", default=None, help="job id (default: generated)")
    p.add_argument("--entrypoint-num-cpus", type=float, default=None,
                   help="CPUs reserved for the command itself (default 0)")
    p.add_argument("--no-wait", action="store_true",
                   help="return after submitting instead of following the logs")
    p.add_argument("job_command", nargs=argparse.REMAINDER, metavar="command",
                   help="the command to run, after `--`")
    p.set_defaults(func=_cmd_submit)
