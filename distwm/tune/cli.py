"""The ``distwm sweep``, ``distwm report`` and ``distwm submit`` subcommands.

``distwm.cli`` calls ``add_sweep_parser``, ``add_report_parser`` and ``add_submit_parser``;
each registers its subcommand with a ``func(args) -> exit code``. Heavy imports (ray, torch,
matplotlib) happen inside the commands.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_sweep_parser", "add_report_parser", "add_submit_parser"]


def _cmd_sweep(args: argparse.Namespace) -> int:
    from distwm.tune.sweep import run_sweep
    from distwm.tune.sweep_config import SweepConfig

    sweep = SweepConfig.load(args.config)
    overrides = {}
    if args.name:
        overrides["name"] = args.name
    if args.storage_path:
        overrides["tune"] = {**sweep.tune.to_dict(), "storage_path": args.storage_path}
    if overrides:
        sweep = SweepConfig.from_dict({**sweep.to_dict(), **overrides})
    print(f"distwm sweep: {sweep.name}: {sweep.num_grid_trials()} trials "
          f"({len(sweep.agents)} agents x {len(sweep.games)} games x {len(sweep.seeds)} seeds"
          + (f", search over {', '.join(sweep.search)}" if sweep.search else "")
          + f") -> {sweep.experiment_path()}", flush=True)
    from distwm.utils.tables import format_table

    outcome = run_sweep(sweep, address=args.address, resume=args.resume)
    print(format_table(outcome.HEADERS, outcome.table_rows()))
    print(f"\nResults: {outcome.path}\nReport:  distwm report {outcome.path}", flush=True)
    return 1 if outcome.num_errors else 0


def add_sweep_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep", help="run a sweep (agents x games x seeds) with Ray Tune",
        description="Run tune_configs/X.yaml: every trial is one distributed training run. "
        "Results go to <tune.storage_path>/<name>; `distwm report` aggregates them.")
    p.add_argument("config", help="sweep YAML, e.g. tune_configs/quickstart.yaml")
    p.add_argument("--address", default=None,
                   help="Ray address ('auto': the running cluster; default: $RAY_ADDRESS or a "
                   "new local instance)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted sweep of this name (Tuner.restore)")
    p.add_argument("--name", default=None, help="override the sweep's name")
    p.add_argument("--storage-path", default=None, help="override tune.storage_path")
    p.set_defaults(func=_cmd_sweep)


def _cmd_report(args: argparse.Namespace) -> int:
    import os

    from distwm.tune.sweep_report import build_sweep_report, export_gauges

    compare = None
    if args.compare is not None:
        compare = [a.strip() for a in args.compare.split(",") if a.strip()]
    result = build_sweep_report(args.results_dir, compare=compare, out_dir=args.out,
                                num_samples=args.num_samples, seed=args.seed)
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


def add_report_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="aggregate a sweep: IQM/median/mean/optimality gap with CIs, plots",
        description="Aggregate the sweep at RESULTS_DIR (<tune.storage_path>/<name>) into "
        "markdown, CSV and LaTeX tables and PNG plots, beside published agents when the "
        "sweep's suite has them.")
    p.add_argument("results_dir", help="the sweep's results directory (local path or URI)")
    p.add_argument("--compare", default=None,
                   help="published agents to put beside, e.g. DreamerV3,IRIS,DIAMOND "
                   "(default: the sweep's `compare`; '' for none)")
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
