"""The ``distwm sweep``, ``distwm report`` and ``distwm submit`` subcommands.

``distwm.cli`` calls ``add_sweep_parser``, ``add_report_parser`` and ``add_submit_parser``;
each registers its subcommand with a ``func(args) -> exit code``. Heavy imports (ray, torch,
matplotlib) happen inside the commands.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_sweep_parser", "add_report_parser", "add_submit_parser"]


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
