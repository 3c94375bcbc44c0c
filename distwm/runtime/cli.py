"""``distwm train``: the runtime's command (hooked into ``distwm.cli`` by ``add_train_parser``).

::

    distwm train dreamer --env cartpole-balance --workers 4 --envs-per-worker 2 --shards 2 \\
        --learners 2 --train-ratio 512 --steps 100000 [--address auto] [--config run.yaml] \\
        [--set key=value ...] [--run-dir DIR | --run-dir s3://bucket/runs/x]
    distwm train --config quickstart      # a preset: small DreamerV3 on CartPole-v1, ~10 min CPU
    distwm train --resume RUN_DIR [--steps 200000]

A dataset-trained model (Genie) trains on Ray Train over a shard directory instead
(:mod:`distwm.runtime.data_parallel`); ``--steps`` counts updates, and the RL layout flags
(--env, --envs-per-worker, --shards, --learners, --train-ratio) do not apply::

    distwm train genie --data DATA --workers 4 [--gpus-per-worker 1] [--stage tokenizer|lam|dynamics|all] \
        --steps 50000 [--set data_parallel.checkpoint_interval=500] [--set batch_size=8]
    distwm train --resume RUN_DIR --steps 80000

Precedence: the model's defaults < ``--config run.yaml`` < the flags < ``--set`` (in order).
``--set`` keys: ``runtime.<field>`` for a runtime field (``--set runtime.chunk_length=32``),
``agent.<field>`` or a bare ``<field>`` for an agent config field (``--set batch_size=8``);
for a dataset-trained model ``data_parallel.<field>`` and ``model_config.<field>`` (or bare).
Every option is checked (and one env and agent are built) before any actor starts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

__all__ = ["add_train_parser", "build_data_parallel_config", "build_run_config", "cmd_train",
           "is_data_parallel_request", "list_presets"]

#: flag -> runtime field
_RUNTIME_FLAGS = {"workers": "workers", "envs_per_worker": "envs_per_worker", "shards": "shards",
                  "learners": "learners",
                  "train_ratio": "train_ratio", "steps": "total_steps", "address": "address",
                  "run_dir": "run_dir"}
#: flag -> agent config field
_AGENT_FLAGS = {"env": "env", "seed": "seed"}
#: flag -> data-parallel field (dataset-trained models)
_DATA_PARALLEL_FLAGS = {"data": "data", "workers": "workers", "gpus_per_worker": "gpus_per_worker",
                        "steps": "total_updates", "seed": "seed", "address": "address",
                        "run_dir": "run_dir"}
#: flags of the actor-learner runtime only, and of the data-parallel path only
_RL_ONLY = {"env": "--env", "envs_per_worker": "--envs-per-worker", "shards": "--shards",
            "learners": "--learners", "train_ratio": "--train-ratio"}
_DATA_ONLY = {"data": "--data", "gpus_per_worker": "--gpus-per-worker", "stage": "--stage"}


def _workers(value: str) -> Any:
    if value == "auto":
        return "auto"
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int or 'auto', got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int or 'auto', got {value!r}")
    return number


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to ``distwm``'s subparsers."""
    p = subparsers.add_parser(
        "train", help="train an agent on Ray: env workers, replay shards, a learner",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?",
                   help="a model from `distwm models` (e.g. dreamer), or module:ConfigClass")
    p.add_argument("--env", help="environment id (agent config field env)")
    p.add_argument("--workers", type=_workers,
                   help="env-worker actors, or for a dataset-trained model Ray Train workers; "
                        "'auto': what the cluster holds")
    p.add_argument("--envs-per-worker", type=int, dest="envs_per_worker", help="envs per worker")
    p.add_argument("--shards", type=int, help="replay-shard actors")
    p.add_argument("--learners", type=int,
                   help="data-parallel learner actors (one torch.distributed group)")
    p.add_argument("--train-ratio", type=float, dest="train_ratio",
                   help="replayed steps per env step (default: the agent's)")
    p.add_argument("--steps", type=int,
                   help="env steps to collect (a dataset-trained model: updates)")
    p.add_argument("--data", metavar="DATA",
                   help="the data set of a dataset-trained model: a shard directory (manifest.json "
                        "+ HDF5 shards, e.g. from `distwm collect`), a CIFAR-10 / image folder, or "
                        "sklearn:digits[:SIZE][:rgb]")
    p.add_argument("--gpus-per-worker", type=float, dest="gpus_per_worker",
                   help="GPUs per Ray Train worker of a dataset-trained model (0: CPU, gloo)")
    p.add_argument("--stage", help="training stage of a dataset-trained model whose config has "
                                   "one (Genie: tokenizer, lam, dynamics, all)")
    p.add_argument("--seed", type=int, help="run seed (agent config field seed)")
    p.add_argument("--address", help="Ray address ('auto', ray://host:10001); default RAY_ADDRESS "
                                     "or a new local instance")
    p.add_argument("--config", help="a run.yaml (model, agent, runtime) or a preset name "
                                    f"({', '.join(list_presets())})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field: runtime.<field>=v, agent.<field>=v or <agent field>=v")
    p.add_argument("--run-dir", dest="run_dir",
                   help="run directory: a path, a shared mount or a URI (s3://, gs://, file://) "
                        "every node reaches (default runs/<model>-<env>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a run (its replay, last checkpoint and counters)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved run.yaml and exit without training")
    p.set_defaults(func=cmd_train)
    return p


PRESETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets")


def list_presets() -> list[str]:
    """Names of the run presets shipped with distwm (``--config NAME``)."""
    return sorted(f[:-5] for f in os.listdir(PRESETS_DIR) if f.endswith(".yaml"))


def resolve_config_path(config: str) -> str:
    """``config`` if it is a file, else the shipped preset of that name."""
    if os.path.isfile(config):
        return config
    preset = os.path.join(PRESETS_DIR, f"{config}.yaml")
    if os.sep not in config and os.path.isfile(preset):
        return preset
    raise ValueError(
        f"--config {config!r} is neither a file nor a preset (presets: {', '.join(list_presets())})"
    )


def _given(args: argparse.Namespace, flags) -> list[str]:
    return [flag for name, flag in flags.items() if getattr(args, name, None) is not None]


def is_data_parallel_request(args: argparse.Namespace) -> bool:
    """Do the arguments name a dataset-trained run: its model, its run.yaml (``--config``) or
    its run directory (``--resume``)? Reads files, builds nothing."""
    from distwm.configs.runtime_config import is_data_parallel_run_yaml, is_dataset_trained
    from distwm.utils import storage

    if args.resume:
        try:
            return is_data_parallel_run_yaml(storage.read_text(storage.join(args.resume, "run.yaml")))
        except FileNotFoundError:
            return False
    if args.config:
        try:
            path = resolve_config_path(args.config)
        except ValueError:
            path = None  # reported where the config is read
        if path is not None:
            with open(path, encoding="utf-8") as f:
                if is_data_parallel_run_yaml(f.read()):
                    return True
    return is_dataset_trained(args.model)


def build_data_parallel_config(args: argparse.Namespace):
    """The :class:`~distwm.configs.runtime_config.DataParallelRunConfig` the arguments
    describe (``ValueError`` on a bad one, an RL flag among them)."""
    from distwm.configs.runtime_config import DataParallelRunConfig
    from distwm.runtime.data_parallel import load_data_parallel_run

    rl_flags = _given(args, _RL_ONLY)
    if rl_flags:
        raise ValueError(f"{', '.join(rl_flags)}: a dataset-trained model trains on Ray Train "
                         "over --data, without env workers or replay (its flags: --data, "
                         "--workers, --gpus-per-worker, --stage, --steps, --seed, --set)")
    if args.resume:
        run = load_data_parallel_run(args.resume)
        if args.model and run.spec().name != DataParallelRunConfig(model=args.model).spec().name:
            raise ValueError(f"--resume {args.resume} continues a {run.model!r} run, not {args.model!r}")
    elif args.config:
        run = DataParallelRunConfig.from_yaml(Path(resolve_config_path(args.config)))
        if args.model:
            run = run.replace(model=args.model)
    else:
        run = DataParallelRunConfig(model=args.model)
    run.spec()  # a dataset-trained model
    fields = {field: getattr(args, flag) for flag, field in _DATA_PARALLEL_FLAGS.items()
              if getattr(args, flag) is not None}
    if fields:
        run = run.replace(data_parallel=run.data_parallel.replace(**fields))
    if args.stage is not None:
        run = run.with_stage(args.stage)
    for assignment in args.overrides:
        run = run.apply_override(assignment)
    return run.validate()


def _not_dataset_trained(model: str) -> str:
    """Why ``model`` takes no data set, in words."""
    from distwm.registry import get_model_spec, list_models

    try:
        kind = get_model_spec(model).kind if ":" not in model else "rl-agent"
    except ValueError:
        return f"{model!r} is not a registered model"
    ours = [m for m in list_models() if get_model_spec(m).kind == "dataset-trained"]
    why = ("it trains from env workers (--env), not from a data set" if kind == "rl-agent"
           else "it is a network other models are built from")
    return (f"model {model!r} is of kind {kind!r}: {why} (dataset-trained models: "
            f"{', '.join(ours) or 'none installed'})")


def build_run_config(args: argparse.Namespace):
    """The :class:`RunConfig` the arguments describe (``ValueError`` on a bad one, a flag of the
    data-parallel path among them)."""
    from distwm.configs.runtime_config import RunConfig
    from distwm.runtime.setup import load_run_config

    if args.resume:
        run = load_run_config(args.resume)
        if args.model and args.model != run.model:
            raise ValueError(f"--resume {args.resume} continues a {run.model!r} run, not {args.model!r}")
    elif args.config:
        run = RunConfig.from_yaml(Path(resolve_config_path(args.config)))
        if args.model:
            run = run.replace(model=args.model)
    elif args.model:
        run = RunConfig(model=args.model)
    else:
        raise ValueError("give a MODEL (see `distwm models`), --config run.yaml or --resume RUN_DIR")
    data_flags = _given(args, _DATA_ONLY)
    if data_flags:
        raise ValueError(f"{', '.join(data_flags)}: {_not_dataset_trained(run.model)}; --data, "
                         "--gpus-per-worker and --stage are for dataset-trained models")
    runtime = {field: getattr(args, flag) for flag, field in _RUNTIME_FLAGS.items()
               if getattr(args, flag) is not None}
    if runtime:
        run = run.replace(runtime=run.runtime.replace(**runtime))
    agent = {field: getattr(args, flag) for flag, field in _AGENT_FLAGS.items()
             if getattr(args, flag) is not None}
    if agent:
        run = run.replace(agent={**run.agent, **agent})
    for assignment in args.overrides:
        run = run.apply_override(assignment)
    return run.validate()


def cmd_train(args: argparse.Namespace) -> int:
    data_parallel = is_data_parallel_request(args)
    run_config = build_data_parallel_config(args) if data_parallel else build_run_config(args)
    if args.print_config:
        print(run_config.to_yaml(), end="")
        return 0
    if data_parallel:
        from distwm.runtime.data_parallel import run
    else:
        from distwm.runtime.driver import run

    result = run(run_config, resume=args.resume)
    print(f"run directory: {result.run_dir}")
    return 0
