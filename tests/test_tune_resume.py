"""A real tiny sweep stopped by SIGINT (what Ctrl-C sends) while its first trial runs: `distwm
sweep` exits 130 and prints the resume command; `distwm sweep --resume <experiment>` then
finishes it, the interrupted trial continuing its run from the last learner checkpoint.

Event-driven: the trial's env stops at a gate (an env step count past the first learner
checkpoint) until the sweep has been interrupted, so the SIGINT always lands while the trial
is unfinished, however fast or slow the machine is."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import gymnasium
import pytest

# env.step calls: the gate is in the 7th chunk of 16 steps. The worker's collect calls return
# after every chunk (collect_seconds 0.001), so the 6 before it reached the driver: 96 replay
# steps (past min_fill 64: the learner updates and checkpoints) and a finished episode (50
# steps), which gives the trial a score to report to Tune with that checkpoint.
GATE_STEP = 100
GATE_WAIT_S = 240


def gated_env(config, seed):
    """The sweep's env factory: the usual env, whose step ``GATE_STEP`` waits until the gate
    file exists (touching ``reached`` first); the gate opens once the sweep was interrupted."""
    import dataclasses

    from distwm.envs import make_env_from_config

    kwargs = dict(config.env_kwargs)
    gate, reached = Path(kwargs.pop("gate")), Path(kwargs.pop("reached"))
    env = make_env_from_config(dataclasses.replace(config, env_kwargs=kwargs), seed)

    class Gated(gymnasium.Wrapper):
        steps = 0

        def step(self, action):
            self.steps += 1
            if self.steps == GATE_STEP and not gate.exists():
                reached.touch()
                deadline = time.monotonic() + GATE_WAIT_S
                while not gate.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
            return self.env.step(action)

    return Gated(env)


def _tiny_sweep(tmp: Path) -> dict:
    return {
        "name": "stopped", "suite": "dmc_proprio",
        "agents": {"dreamer": {"model": "dreamer", "agent": {
            "model_size": "tiny", "obs_type": "state", "action_repeat": 2, "time_limit": 100,
            "batch_size": 4, "train_seq_len": 8, "train_ratio": 4.0, "imagine_horizon": 5,
            "device": "cpu", "env_kwargs": {"gate": str(tmp / "gate-open"),
                                            "reached": str(tmp / "gate-reached")}}}},
        "games": ["cartpole-balance"], "seeds": [0, 1],
        "budget": {"env_steps": 240, "eval_episodes": 1},
        "runtime": {"workers": 1, "shards": 1, "buffer_size": 4000, "min_fill": 64,
                    "chunk_length": 16, "checkpoint_interval": 3, "progress_seconds": 1.0,
                    "collect_seconds": 0.001, "learner_gpus": 0, "max_restarts": 0,
                    "verbose": False, "env_factory": "test_tune_resume:gated_env"},
        # one trial at a time, so the second is still pending when the first is interrupted
        "tune": {"storage_path": str(tmp / "results"), "max_concurrent_trials": 1,
                 "max_failures": 0, "verbose": 0},
    }


def _interrupt_when_checkpointed(experiment: Path, reached: Path, sent: list) -> None:
    """SIGINT this process once the trial's env waits at the gate and the trial has reported
    a checkpoint to Tune."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if reached.exists() and list(experiment.glob("*/checkpoint_*")):
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
    thread = threading.Thread(target=_interrupt_when_checkpointed,
                              args=(experiment, tmp_path / "gate-reached", sent), daemon=True)
    thread.start()
    try:
        code = main(["sweep", str(config)])
    finally:
        thread.join(timeout=10)
        signal.signal(signal.SIGINT, previous)
        (tmp_path / "gate-open").touch()  # the resumed trials run through
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
    assert len(trials) == 2 and all(t.last_result["env_steps"] >= 240 for t in trials)
    # a trial stopped mid-run continued its own run from its learner checkpoint
    stopped = [t for t in trials
               if trial_label(t.config) in unfinished and Path(t.path).name in checkpointed]
    assert stopped, (unfinished, checkpointed)
    assert all(t.last_result["resumed"] >= 1 for t in stopped)
