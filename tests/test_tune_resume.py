"""A real tiny sweep stopped by SIGINT (what Ctrl-C sends) while its first trial runs: `distwm
sweep` exits 130 and prints the resume command; `distwm sweep --resume <experiment>` then
finishes it, the interrupted trial continuing its run from the last learner checkpoint."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest


def _tiny_sweep(tmp: Path) -> dict:
    return {
        "name": "stopped", "suite": "dmc_proprio",
        "agents": {"dreamer": {"model": "dreamer", "agent": {
            "model_size": "tiny", "obs_type": "state", "action_repeat": 2, "time_limit": 100,
            "batch_size": 4, "train_seq_len": 8, "train_ratio": 4.0, "imagine_horizon": 5,
            "device": "cpu"}}},
        "games": ["cartpole-balance"], "seeds": [0, 1],
        "budget": {"env_steps": 400, "eval_episodes": 1},
        "runtime": {"workers": 1, "shards": 1, "buffer_size": 4000, "min_fill": 64,
                    "chunk_length": 16, "checkpoint_interval": 3, "progress_seconds": 1.0,
                    "learner_gpus": 0, "max_restarts": 0, "verbose": False},
        # one trial at a time, so the second is still pending when the first is interrupted
        "tune": {"storage_path": str(tmp / "results"), "max_concurrent_trials": 1,
                 "max_failures": 0, "verbose": 0},
    }


def _interrupt_when_checkpointed(experiment: Path, sent: list) -> None:
    """SIGINT this process once a trial has reported a checkpoint to Tune."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if list(experiment.glob("*/checkpoint_*")):
            os.kill(os.getpid(), signal.SIGINT)
            sent.append(time.monotonic())
            return
        time.sleep(0.2)


@pytest.mark.ray
@pytest.mark.slow
def test_sigint_stops_the_sweep_with_130_and_resume_finishes_it(ray_session, tmp_path, capsys):
    from ray import tune
    from ray.tune import ExperimentAnalysis

    from distwm.cli import main
    from distwm.tune.sweep_config import SweepConfig
    from distwm.tune.trainable import trial_label

    sweep = SweepConfig.from_dict(_tiny_sweep(tmp_path))
    config = tmp_path / "stopped.yaml"
    sweep.to_yaml(config)
    experiment = Path(sweep.experiment_path())

    sent: list = []
    stray: list = []
    # Tune replaces this during fit and puts it back after the first SIGINT; a signal that
    # arrives outside fit lands here instead of ending the test session
    previous = signal.signal(signal.SIGINT, lambda *_: stray.append(1))
    thread = threading.Thread(target=_interrupt_when_checkpointed, args=(experiment, sent),
                              daemon=True)
    thread.start()
    try:
        code = main(["sweep", str(config)])
    finally:
        thread.join(timeout=10)
        signal.signal(signal.SIGINT, previous)
    out, err = capsys.readouterr()
    assert sent and not stray, "the SIGINT did not reach Tune while the sweep ran"
    assert code == 130, out + err
    assert "UNFINISHED" in out
    assert "distwm sweep: interrupted (Ctrl-C)" in err
    assert f"distwm sweep --resume {experiment}" in err
    assert tune.Tuner.can_restore(str(experiment))
    unfinished = {line.split()[0] for line in out.splitlines() if "UNFINISHED" in line.split()}
    checkpointed = {p.parent.name for p in experiment.glob("*/checkpoint_*")}

    assert main(["sweep", "--resume", str(experiment)]) == 0
    out = capsys.readouterr().out
    assert "dreamer-cartpole-balance-s0  DONE" in out and "dreamer-cartpole-balance-s1  DONE" in out
    trials = ExperimentAnalysis(str(experiment)).trials
    assert len(trials) == 2 and all(t.last_result["env_steps"] >= 400 for t in trials)
    # a trial stopped mid-run continued its own run from its learner checkpoint
    stopped = [t for t in trials
               if trial_label(t.config) in unfinished and Path(t.path).name in checkpointed]
    assert stopped, (unfinished, checkpointed)
    assert all(t.last_result["resumed"] >= 1 for t in stopped)
