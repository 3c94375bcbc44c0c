"""`distwm sweep` as a command: a trial that cannot fit stops it before Tune starts (exit 2), a
sweep stopped by Ctrl-C exits 130 and says how to continue, and `--resume EXPERIMENT` /
`CONFIG --resume` / `--no-fit-check` reach the sweep functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from distwm.cli import main
from distwm.tune.sweep_config import SweepConfig

ROOT = Path(__file__).resolve().parents[1]


def _write_sweep(tmp_path: Path, **runtime) -> tuple[Path, SweepConfig]:
    sweep = SweepConfig.load(ROOT / "tune_configs" / "quickstart.yaml")
    data = sweep.to_dict()
    data["runtime"] = {**data["runtime"], **runtime}
    data["tune"] = {**data["tune"], "storage_path": str(tmp_path / "results"), "verbose": 0}
    sweep = SweepConfig.from_dict(data)
    path = tmp_path / "sweep.yaml"
    sweep.to_yaml(path)
    return path, sweep


@pytest.fixture
def calls(monkeypatch):
    """Record what the command hands to run_sweep / resume_sweep (which run nothing)."""
    import distwm.tune.sweep as sweep_module

    seen: list[tuple[str, object, dict]] = []

    def fake(kind):
        def run(target, **kwargs):
            seen.append((kind, target, kwargs))
            path = target if isinstance(target, str) else target.experiment_path()
            return sweep_module.SweepOutcome(path, [])
        return run

    monkeypatch.setattr(sweep_module, "run_sweep", fake("run"))
    monkeypatch.setattr(sweep_module, "resume_sweep", fake("resume"))
    return seen


def test_resume_takes_an_experiment_directory_or_the_sweep_yaml(tmp_path, calls, capsys):
    config, sweep = _write_sweep(tmp_path)
    experiment = str(tmp_path / "results" / "quickstart")
    assert main(["sweep", "--resume", experiment]) == 0
    assert main(["sweep", str(config), "--resume", "--no-fit-check"]) == 0
    assert main(["sweep", "--resume", str(config)]) == 0  # a YAML given to --resume names it
    assert main(["sweep", str(config)]) == 0
    kinds = [(kind, kwargs.get("resume"), kwargs["fit_to_cluster"]) for kind, _, kwargs in calls]
    assert kinds == [("resume", None, None), ("run", True, False), ("run", True, None),
                     ("run", False, None)]
    assert calls[0][1] == experiment
    assert all(target == sweep for kind, target, _ in calls[1:])
    assert main(["sweep"]) == 2
    assert "give the sweep YAML" in capsys.readouterr().err
    assert main(["sweep", str(config), "--resume", experiment]) == 2
    assert "not both" in capsys.readouterr().err
    assert len(calls) == 4


def test_unfinished_trials_exit_130_with_the_resume_command(tmp_path, monkeypatch, capsys):
    from ray import tune

    import distwm.tune.sweep as sweep_module

    config, sweep = _write_sweep(tmp_path)
    path = sweep.experiment_path()
    rows = [{"trial": "dreamer-cartpole-balance-s0", "status": "DONE", "env_steps": 4000,
             "score": 10.0, "error": None},
            {"trial": "dreamer-cartpole-balance-s1", "status": "UNFINISHED", "env_steps": 1300,
             "score": 5.0, "error": None}]
    monkeypatch.setattr(sweep_module, "run_sweep",
                        lambda *a, **k: sweep_module.SweepOutcome(path, rows))
    monkeypatch.setattr(tune.Tuner, "can_restore", classmethod(lambda cls, p, **k: p == path))
    assert main(["sweep", str(config)]) == 130
    captured = capsys.readouterr()
    assert "dreamer-cartpole-balance-s1  UNFINISHED" in captured.out
    assert "interrupted (Ctrl-C): 1 of 2 trials unfinished" in captured.err
    assert f"distwm sweep --resume {path}" in captured.err
    rows[1]["status"] = "ERROR"
    assert main(["sweep", str(config)]) == 1  # failed, not interrupted: still resumable
    assert f"distwm sweep --resume {path}" in capsys.readouterr().err


@pytest.mark.ray
def test_ctrl_c_during_the_sweep_exits_130(ray_session, tmp_path, monkeypatch, capsys):
    from ray import tune

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(tune.Tuner, "fit", interrupted)
    config, sweep = _write_sweep(tmp_path)
    assert main(["sweep", str(config)]) == 130
    err = capsys.readouterr().err
    assert "distwm sweep: interrupted (Ctrl-C)" in err
    # the Tuner saved its state before fit: the sweep can be continued from the start
    assert tune.Tuner.can_restore(sweep.experiment_path())
    assert f"distwm sweep --resume {sweep.experiment_path()}" in err
    assert ray_session.is_initialized()  # the test session's Ray is left running


@pytest.mark.ray
def test_a_trial_that_cannot_fit_stops_the_sweep_before_tune(ray_session, tmp_path, monkeypatch,
                                                             capsys):
    from ray import tune

    def never(*args, **kwargs):
        raise AssertionError("Tune started although no trial fits")

    monkeypatch.setattr(tune.Tuner, "__init__", never)
    cpus = ray_session.cluster_resources()["CPU"]
    config, sweep = _write_sweep(tmp_path, workers=int(cpus) + 4, worker_cpus=1.0)
    assert main(["sweep", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("distwm sweep: error: a trial of sweep 'quickstart' cannot fit")
    assert f"{int(cpus) + 4} x env worker {{CPU: 1}}" in err
    assert f"cluster (ray.cluster_resources()) CPU {cpus:g}" in err
    assert f"runtime.workers ({int(cpus) + 4})" in err and "--no-fit-check" in err
    assert not Path(sweep.experiment_path()).exists()  # nothing written
