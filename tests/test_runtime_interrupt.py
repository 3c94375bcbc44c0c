"""Ctrl-C during a runtime run: the driver writes a checkpoint of what the learner has, saves its
counters, says how to continue, re-raises the KeyboardInterrupt, and ``--resume`` goes on from
that checkpoint. The interrupt is a real SIGINT to the driver process, sent at a progress record
(an event, not a time)."""

from __future__ import annotations

import json
import os
import signal

import pytest

from distwm.configs.runtime_config import RuntimeConfig
from runtime_agent import TinyAgentConfig

pytestmark = pytest.mark.ray


def _runtime(run_dir: str, steps: int) -> RuntimeConfig:
    # No periodic checkpoint after the learner's first one (at its first update): a checkpoint
    # with more updates than that can only be the one written on Ctrl-C.
    return RuntimeConfig(workers=1, envs_per_worker=2, shards=1, steps=steps, chunk_length=16,
                         capacity=2048, train_ratio=16.0, min_fill=64, broadcast_interval=5,
                         checkpoint_interval=1_000_000, checkpoint_seconds=0, eval_episodes=0,
                         progress_seconds=0.3, collect_seconds=0.3, train_seconds=0.5,
                         env_factory="runtime_agent:make_env", run_dir=run_dir, verbose=False)


def _logged_steps(run_dir: str) -> int:
    """Env steps in the replay shards' logs (what a resumed run restores)."""
    import glob

    from distwm.runtime.replay_store import INSERT, read_records

    steps = 0
    for part in glob.glob(os.path.join(run_dir, "replay", "shard_*", "log-*.bin")):
        with open(part, "rb") as stream:
            for kind, (ids, _, chunk) in ((k, v) for k, v in read_records(stream) if k == INSERT):
                steps += len(ids) * next(iter(chunk.values())).shape[1]
    return steps


def test_ctrl_c_writes_a_checkpoint_and_resume_continues_from_it(ray_session, tmp_path):
    from distwm.runtime import run
    from distwm.runtime.checkpoints import counters_file, latest_checkpoint, load_checkpoint

    run_dir = str(tmp_path / "interrupted")
    seen = {}

    def ctrl_c(rec, driver):
        if not seen and rec["updates"] >= 10:
            seen.update(updates=rec["updates"], env_steps=rec["env_steps"])
            os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends on Ctrl-C

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        # far more steps than the run can take before the interrupt: it cannot end first
        run(TinyAgentConfig(seed=5), _runtime(run_dir, 1_000_000), on_progress=ctrl_c)
    assert seen, "the run ended before it was interrupted"

    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint is not None
    state = load_checkpoint(checkpoint)
    assert state["updates"] >= seen["updates"] >= 10  # written at the interrupt, not the first one
    assert state["counters"]["env_steps"] >= seen["env_steps"]
    with open(counters_file(run_dir)) as f:
        counters = json.load(f)
    assert counters["env_steps"] >= seen["env_steps"]  # the driver's own (updates: the checkpoint's)
    with open(os.path.join(run_dir, "progress.log")) as f:
        log = f.read()
    assert "[distwm] interrupted: writing a checkpoint" in log
    assert f"[distwm] checkpoint {checkpoint}; continue with `distwm train --resume {run_dir}`" in log
    assert not os.path.exists(os.path.join(run_dir, "report.md"))  # the run did not finish

    # a short continuation (--resume RUN_DIR --steps N) past what replay holds: chunks that were
    # in flight at the interrupt reached the shard's log after the counters were saved, and the
    # resumed run counts them (nothing acknowledged is lost)
    total = _logged_steps(run_dir) + 160
    assert total - 160 >= counters["env_steps"]
    result = run(TinyAgentConfig(seed=5), _runtime(run_dir, total), resume=run_dir)
    s = result.summary
    assert s["epoch"] == 1 and s["env_steps"] >= total
    assert s["updates"] > state["updates"]  # continued from the checkpoint, and trained on
    assert s["updates_lost"] == 0  # nothing after the checkpoint had to be redone
    first = result.history[0]
    assert first["updates"] >= state["updates"] and first["env_steps"] >= seen["env_steps"]
    assert os.path.isfile(os.path.join(run_dir, "report.md"))
