"""The ``distwm`` command: catalog listings and the training, sweep and report entry points."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from distwm.utils.tables import format_table

__all__ = ["main", "build_parser", "format_table"]


def _cmd_models(args: argparse.Namespace) -> int:
    from distwm import api

    rows = []
    for name in api.list_models():
        spec = api.get_model_spec(name)
        rows.append((spec.name, ", ".join(spec.aliases), spec.description))
    print(format_table(("model", "aliases", "description"), rows))
    return 0


def _cmd_backends(args: argparse.Namespace) -> int:
    from distwm import api

    rows = []
    for name in api.list_env_backends():
        spec = api.get_env_backend_spec(name)
        rows.append((spec.name, ", ".join(spec.aliases), spec.description))
    print(format_table(("backend", "aliases", "description"), rows))
    return 0


def _cmd_envs(args: argparse.Namespace) -> int:
    from distwm import api

    if args.model:
        envs = api.list_envs(args.model)
        print(format_table(("env id",), [(e,) for e in envs]))
        return 0
    rows = []
    by_backend = api.list_envs()
    for backend, ids in by_backend.items():
        if args.backend and backend != api.get_env_backend_spec(args.backend).name:
            continue
        rows.extend((backend, env_id) for env_id in ids)
    print(format_table(("backend", "env id"), rows))
    return 0


def _optional_subcommands() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Subcommands contributed by the runtime and tune packages."""
    hooks = []
    for module_name, func_name in (
        ("distwm.runtime.cli", "add_train_parser"),
        ("distwm.runtime.play", "add_play_parser"),
        ("distwm.runtime.collect", "add_collect_parser"),
        ("distwm.tune.cli", "add_sweep_parser"),
        ("distwm.tune.cli", "add_report_parser"),
        ("distwm.tune.cli", "add_submit_parser"),
    ):
        import importlib.util

        if importlib.util.find_spec(module_name) is None:
            continue
        module = __import__(module_name, fromlist=[func_name])
        hook = getattr(module, func_name, None)
        if hook is not None:
            hooks.append(hook)
    return hooks


def build_parser() -> argparse.ArgumentParser:
    from distwm import __version__

    parser = argparse.ArgumentParser(
        prog="distwm",
        description="World-model RL on a Ray actor-learner runtime.",
    )
    parser.add_argument("--version", action="version", version=f"distwm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("models", help="list the models create_model() can build")
    p.set_defaults(func=_cmd_models)
    p = sub.add_parser("backends", help="list the environment backends")
    p.set_defaults(func=_cmd_backends)
    p = sub.add_parser("envs", help="list known environment ids")
    p.add_argument("--model", help="only envs this model family trains on")
    p.add_argument("--backend", help="only this backend's envs")
    p.set_defaults(func=_cmd_envs)

    for hook in _optional_subcommands():
        hook(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        print(f"distwm {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
