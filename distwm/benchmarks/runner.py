"""Benchmark runners: evaluate trained models over seeds and export the results.

Result dict of :meth:`BenchmarkRunner.run` (the seed's format, extended)::

    {
      "agent": "dreamer", "env": "walker-walk", "suite": "dmc" | "atari" | None,
      "num_episodes": 5,
      "seeds": {
        "0": {"status": "ok", "episode_returns": [...], "mean": m, "std": s,
              "normalized_mean": n (when the suite is known), ...extra evaluate() keys},
        "1": {"status": "failed", "stage": "load_checkpoint", "error": "FileNotFoundError: ...",
              "traceback": "..."},
      },
      "aggregate": {compute_aggregate_metrics(per-seed means)..., "per_seed_means": [...],
                    "num_failed": 1, "normalized": {...same for normalised means...}},
      "failures": [{"seed": 1, "stage": ..., "error": ...}],
    }

A seed that fails is recorded with its stage and cause and left out of the aggregate; it is
never scored as zero. When every seed fails the runner writes the results and raises
:class:`BenchmarkError` with every cause.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from distwm.benchmarks.adapters import (BaseAdapter, TrainingUnsupported, env_id_of,
                                        parse_evaluation)
from distwm.benchmarks.metrics import compute_aggregate_metrics

__all__ = ["BenchmarkRunner", "MultiAgentBenchmarkRunner", "BenchmarkError"]

_log = logging.getLogger(__name__)
RESULTS_STEM = "benchmark_results"
COMBINED_STEM = "combined_benchmark_results"


class BenchmarkError(RuntimeError):
    """No seed (or no agent) could be evaluated; ``results`` holds what was recorded."""

    def __init__(self, message: str, results: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.results = dict(results) if results is not None else {}


def _suite_of(env_id: str | None) -> str | None:
    if env_id is None:
        return None
    from distwm.benchmarks.normalization import infer_suite

    try:
        return infer_suite(env_id)
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def write_all_formats(results: Mapping[str, Any], out_dir: str, stem: str,
                      caption: str = "Benchmark results") -> dict[str, str]:
    """Write ``{stem}.json/.csv/.md/.tex`` in ``out_dir`` (created); returns the paths."""
    from distwm.benchmarks import result_tables

    os.makedirs(out_dir, exist_ok=True)
    paths = {ext: os.path.join(out_dir, f"{stem}.{ext}") for ext in ("json", "csv", "md", "tex")}
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    result_tables.export_csv(results, paths["csv"])
    result_tables.export_markdown(results, paths["md"])
    result_tables.export_latex(results, paths["tex"], caption=caption)
    return paths


class BenchmarkRunner:
    """Evaluate one adapter class over seeds and export the results.

    Usage::

        runner = BenchmarkRunner(adapter_cls=MyAdapter, out_dir="results/bench")
        results = runner.run(env_spec="walker-walk", seeds=[0, 1], num_episodes=5,
                             checkpoint="runs/walker/checkpoint.pt")

    Nothing is created before :meth:`run`; it writes ``benchmark_results.{json,csv,md,tex}``
    in ``out_dir``.
    """

    def __init__(self, adapter_cls: Callable[..., BaseAdapter], out_dir: str = "results"):
        if not callable(adapter_cls):
            raise ValueError(f"adapter_cls must be an adapter class, got {adapter_cls!r}")
        self.adapter_cls = adapter_cls
        self.out_dir = os.fspath(out_dir)

    @property
    def agent_name(self) -> str:
        name_fn = getattr(self.adapter_cls, "adapter_name", None)
        return name_fn() if callable(name_fn) else getattr(self.adapter_cls, "__name__", "agent")

    def _checkpoint_for(self, checkpoint, seed: int) -> str:
        if isinstance(checkpoint, Mapping):
            for key in (seed, str(seed)):
                if key in checkpoint:
                    return os.fspath(checkpoint[key])
            raise ValueError(
                f"no checkpoint for seed {seed}; checkpoints are given for seeds {list(checkpoint)}"
            )
        return os.fspath(checkpoint)

    def _run_seed(self, env_spec, seed: int, num_episodes: int, checkpoint, extra_kwargs,
                  progress: dict) -> dict[str, Any]:
        """Evaluate one seed; ``progress["stage"]`` tells where a failure happened."""
        adapter = None
        try:
            progress["stage"] = "construct"
            adapter = self.adapter_cls(env_spec=env_spec, seed=seed, **extra_kwargs)
            progress["stage"] = "load_checkpoint"
            adapter.load_checkpoint(self._checkpoint_for(checkpoint, seed))
            progress["stage"] = "evaluate"
            evaluation = adapter.evaluate(num_episodes=num_episodes, render=False)
            progress["stage"] = "parse"
            record = parse_evaluation(evaluation, f"{type(adapter).__name__}.evaluate")
        finally:
            close = getattr(adapter, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # closing must not hide the real outcome
                    _log.exception("closing the adapter for seed %d failed", seed)
        returns = record["episode_returns"]
        record.update(status="ok", mean=float(np.mean(returns)), std=float(np.std(returns)),
                      num_episodes=len(returns))
        return record

    def run(self, env_spec: Any | None = None, seeds: Sequence[int] | None = None,
            num_episodes: int = 5, checkpoint: str | Mapping | None = None,
            extra_kwargs: Mapping[str, Any] | None = None, *,
            raise_on_error: bool = False, write: bool = True) -> dict[str, Any]:
        """Evaluate every seed; returns the results dict (module docstring).

        ``checkpoint`` is one path for all seeds or ``{seed: path}``; it is required (only
        trained models are benchmarked). With ``raise_on_error`` the first failure is raised
        at once instead of being recorded.
        """
        if checkpoint is None:
            raise ValueError(
                "a checkpoint is required for benchmarking (only trained models are "
                "benchmarked): pass checkpoint='path' or {seed: path}"
            )
        if num_episodes < 1:
            raise ValueError(f"num_episodes must be >= 1, got {num_episodes!r}")
        seeds = list(seeds) if seeds is not None else [0]
        if not seeds:
            raise ValueError("seeds must hold at least one seed")
        extra_kwargs = dict(extra_kwargs or {})
        env_id = env_id_of(env_spec)
        suite = _suite_of(env_id)
        results: dict[str, Any] = {
            "agent": self.agent_name, "env": env_id, "suite": suite,
            "num_episodes": num_episodes, "seeds": {}, "aggregate": {}, "failures": [],
        }
        start = time.monotonic()
        for i, seed in enumerate(seeds):
            seed = int(seed)
            progress = {"stage": "construct"}
            try:
                record = self._run_seed(env_spec, seed, num_episodes, checkpoint, extra_kwargs,
                                        progress)
            except Exception as exc:
                if raise_on_error:
                    raise
                failure = {"seed": seed, "stage": progress["stage"], "error": _describe(exc)}
                results["failures"].append(failure)
                results["seeds"][str(seed)] = {"status": "failed", **failure,
                                               "traceback": traceback.format_exc()}
                _log.error("%s seed %d failed at %s: %s", self.agent_name, seed,
                           failure["stage"], failure["error"])
            else:
                if suite is not None:
                    from distwm.benchmarks.normalization import normalize_score

                    record["normalized_mean"] = normalize_score(env_id, record["mean"], suite)
                results["seeds"][str(seed)] = record
            elapsed = time.monotonic() - start
            eta = elapsed / (i + 1) * (len(seeds) - i - 1)
            _log.info("%s on %s: seed %d done (%d/%d), %.1fs elapsed, ETA %.1fs",
                      self.agent_name, env_id, seed, i + 1, len(seeds), elapsed, eta)
        results["aggregate"] = self._aggregate(results)
        if write:
            write_all_formats(results, self.out_dir, RESULTS_STEM)
        if not results["aggregate"]["num_seeds"]:
            causes = "; ".join(f"seed {f['seed']} ({f['stage']}): {f['error']}"
                               for f in results["failures"])
            raise BenchmarkError(f"{self.agent_name}: every seed failed: {causes}", results)
        return results

    @staticmethod
    def _aggregate(results: Mapping[str, Any]) -> dict[str, Any]:
        ok = [r for r in results["seeds"].values() if r["status"] == "ok"]
        num_failed = len(results["failures"])
        if not ok:
            return {"num_seeds": 0, "num_failed": num_failed, "per_seed_means": []}
        means = [r["mean"] for r in ok]
        aggregate = compute_aggregate_metrics(means)
        aggregate.update(per_seed_means=means, num_failed=num_failed)
        if all("normalized_mean" in r for r in ok):
            aggregate["normalized"] = compute_aggregate_metrics([r["normalized_mean"] for r in ok])
        return aggregate


class MultiAgentBenchmarkRunner:
    """Evaluate several adapter classes on the same environment.

    Usage::

        runner = MultiAgentBenchmarkRunner(adapters=[DreamerV1Adapter, DreamerV2Adapter])
        results = runner.run_all(env_spec="walker-walk", seeds=[0, 1], num_episodes=5,
                                 checkpoints={"dreamerv1": "a.pt", "dreamerv2": "b.pt"})

    ``checkpoints`` is keyed by each adapter's ``adapter_name()``. With ``train_epochs``
    instead, each adapter's ``train`` classmethod produces the checkpoint first. Returns
    ``{agent_name: BenchmarkRunner result}``; an agent whose every seed failed is kept with its
    recorded failures. Writes ``{out_dir}/{agent}/benchmark_results.*`` and
    ``{out_dir}/combined_benchmark_results.*``.
    """

    def __init__(self, adapters: Sequence[Callable[..., BaseAdapter]], out_dir: str = "results"):
        self.adapters = list(adapters)
        if not self.adapters:
            raise ValueError("adapters must hold at least one adapter class")
        self.out_dir = os.fspath(out_dir)
        names = [BenchmarkRunner(a, self.out_dir).agent_name for a in self.adapters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"adapter names must be unique; duplicated: {duplicates}")
        self.names = names

    def run_all(self, env_spec: Any, seeds: Sequence[int] | None = None, num_episodes: int = 5,
                checkpoints: Mapping[str, Any] | None = None,
                extra_kwargs: Mapping[str, Any] | None = None,
                train_epochs: int | None = None) -> dict[str, Any]:
        if checkpoints is None and train_epochs is None:
            raise ValueError(
                "pass checkpoints={agent: path} (agents: " + ", ".join(self.names) + ") or "
                "train_epochs=N to train each agent first; only trained models are benchmarked"
            )
        checkpoints = dict(checkpoints or {})
        if train_epochs is not None:
            untrainable = [cls for cls, name in zip(self.adapters, self.names)
                           if name not in checkpoints and not cls.can_train()]
            if untrainable:  # before any training starts, so no run is wasted
                raise TrainingUnsupported(untrainable)
            for adapter_cls, name in zip(self.adapters, self.names):
                if name not in checkpoints:
                    train_dir = os.path.join(self.out_dir, name, "train")
                    checkpoints[name] = adapter_cls.train(env_spec, train_epochs, train_dir,
                                                          **dict(extra_kwargs or {}))
        missing = [n for n in self.names if n not in checkpoints]
        if missing:
            raise ValueError(
                f"no checkpoint for {missing}; checkpoints given for {sorted(checkpoints)}"
            )
        all_results: dict[str, Any] = {}
        for adapter_cls, name in zip(self.adapters, self.names):
            _log.info("benchmarking %s on %s", name, env_id_of(env_spec))
            runner = BenchmarkRunner(adapter_cls, out_dir=os.path.join(self.out_dir, name))
            try:
                all_results[name] = runner.run(env_spec=env_spec, seeds=seeds,
                                               num_episodes=num_episodes,
                                               checkpoint=checkpoints[name],
                                               extra_kwargs=extra_kwargs)
            except BenchmarkError as exc:
                _log.error("%s", exc)
                all_results[name] = exc.results
        write_all_formats(all_results, self.out_dir, COMBINED_STEM)
        if not any(r["aggregate"].get("num_seeds") for r in all_results.values()):
            raise BenchmarkError("every agent failed on every seed; see the recorded failures",
                                 all_results)
        return all_results
