"""Benchmarks: runners, adapters, rliable-style statistics, normalisation, reports.

``import distwm.benchmarks`` is light (no torch, scipy or matplotlib); names load on first use::

    from distwm.benchmarks import BenchmarkRunner, compute_suite_metrics
    runner = BenchmarkRunner(adapter_cls=MyAdapter, out_dir="results")
    results = runner.run(env_spec="walker-walk", seeds=[0, 1], checkpoint="ckpt.pt")
"""

from __future__ import annotations

from distwm._lazy import lazy_exports

_LAZY = {
    "BaseAdapter": "distwm.benchmarks.adapters",
    "AgentAdapter": "distwm.benchmarks.adapters",
    "TrainingUnsupported": "distwm.benchmarks.adapters",
    "run_agent_episodes": "distwm.benchmarks.adapters",
    "DreamerAdapter": "distwm.benchmarks.dreamer_adapters",
    "IRISAdapter": "distwm.benchmarks.iris_adapter",
    "DiamondAdapter": "distwm.benchmarks.iris_adapter",
    "DreamerV1Adapter": "distwm.benchmarks.dreamer_adapters",
    "DreamerV2Adapter": "distwm.benchmarks.dreamer_adapters",
    "DreamerV3Recipe2024Adapter": "distwm.benchmarks.dreamer_adapters",
    "BenchmarkRunner": "distwm.benchmarks.runner",
    "MultiAgentBenchmarkRunner": "distwm.benchmarks.runner",
    "BenchmarkError": "distwm.benchmarks.runner",
    "iqm_of_array": "distwm.benchmarks.metrics",
    "bootstrap_ci": "distwm.benchmarks.metrics",
    "bootstrap_iqm_ci": "distwm.benchmarks.metrics",
    "compute_aggregate_metrics": "distwm.benchmarks.metrics",
    "compute_suite_metrics": "distwm.benchmarks.metrics",
    "probability_of_improvement": "distwm.benchmarks.metrics",
    "performance_profile": "distwm.benchmarks.metrics",
    "normalize_score": "distwm.benchmarks.normalization",
    "normalize_scores": "distwm.benchmarks.normalization",
    "load_published_scores": "distwm.benchmarks.reference",
    "list_published_agents": "distwm.benchmarks.reference",
    "compute_suite_report": "distwm.benchmarks.suite_report",
    "write_report": "distwm.benchmarks.suite_report",
    "export_csv": "distwm.benchmarks.result_tables",
    "export_markdown": "distwm.benchmarks.result_tables",
    "export_latex": "distwm.benchmarks.result_tables",
    "plot_performance_profiles": "distwm.benchmarks.plots",
    "plot_aggregate_intervals": "distwm.benchmarks.plots",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
