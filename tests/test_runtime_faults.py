"""Fault injection on a local Ray instance: real actor processes killed with SIGKILL, a driver
that dies, and a data-parallel learner group that loses a rank."""

from __future__ import annotations

import os
import signal

import pytest

from runtime_agent import TinyAgentConfig, check_final_eval
from test_runtime_ray import runtime

pytestmark = pytest.mark.ray

MONOTONIC = ("env_steps", "updates", "replay_inserted", "replay_sampled", "episodes",
             "weight_version")


def sigkill(driver, role: str, index: int = 0) -> int:
    """Kill the process of a run's actor (the driver learns each actor's pid from its answers)."""
    pid = driver.pids[(role, index)]
    os.kill(pid, signal.SIGKILL)
    return pid


def assert_monotonic(history) -> None:
    for key in MONOTONIC:
        values = [rec[key] for rec in history]
        assert values == sorted(values), (key, values)
    assert all(rec["updates_per_s"] >= 0 and rec["env_steps_per_s"] >= 0 for rec in history)


def test_sigkill_of_every_kind_of_actor_loses_nothing(ray_session, tmp_path):
    from distwm.runtime import run

    order = ["worker", "shard", "learner", "evaluator"]
    killed: dict[str, int] = {}

    def chaos(rec, driver):
        # one kill per progress line, each once the previous restart has happened
        if len(killed) == len(order) or len(driver.events) < len(killed) or rec["updates"] < 20:
            return
        role = order[len(killed)]
        index = 1 if role == "worker" else 0
        if driver.pids.get((role, index)):  # known once that actor has answered
            killed[role] = sigkill(driver, role, index)

    # capacity for every step in one shard: while worker 1 restarts, worker 0 may collect most
    # of the budget into its shard, and a ring that wraps would evict (not lose) its oldest chunks
    rt = runtime(tmp_path, "chaos", shards=2, envs_per_worker=1, steps=2400, eval_interval=80,
                 eval_episodes=1, checkpoint_interval=40, progress_seconds=0.3, audit_replay=True,
                 max_restarts=2, capacity=2 * 4096)
    result = run(TinyAgentConfig(seed=6), rt, on_progress=chaos)
    s = result.summary
    assert list(killed) == order
    assert s["restarts"] == {role: 1 for role in order}
    assert s["env_steps"] >= 2400
    assert all(st["inserted"] <= st["capacity"] for st in s["shard_stats"])  # nothing evicted
    audit = s["replay_audit"]
    assert audit["acked_chunks"] * 16 == s["acked_steps"] > 0
    assert audit["missing"] == 0, audit
    assert_monotonic(result.history)
    # the learner restarted from a checkpoint and the report counts what it redid
    learner = next(e for e in s["events"] if e["role"] == "learner")
    assert learner["restored_from"] is not None and learner["updates_redone"] >= 0
    assert s["updates_lost"] == learner["updates_redone"]
    shard = next(e for e in s["events"] if e["role"] == "shard")
    assert shard["restored_steps"] > 0 and shard["restored_log_steps"] > 0
    report = open(os.path.join(result.run_dir, "report.md")).read()
    for role in order:
        assert f"- {role} " in report, role
    assert "Replay audit:" in report and "all in replay" in report
    check_final_eval(s["final_eval"], episodes=1, max_length=20)  # after the evaluator's restart
    assert s["metric_max"]["seq_violations"] == 0


class DriverDied(Exception):
    pass


def test_a_dead_driver_resumes_with_its_replay_from_a_uri_run_dir(ray_session, tmp_path):
    """The driver dies (its actors go with it); `--resume` on a file:// run directory brings
    every acknowledged chunk back and the counters continue."""
    from distwm.runtime import run
    from distwm.runtime.run_report import read_metrics

    uri = f"file://{tmp_path}/uri-run"
    seen = {}

    def die(rec, driver):
        if rec["env_steps"] >= 320 and rec["updates"] > 0:
            seen.update(rec=rec, acked=set(driver.acked_chunks))
            raise DriverDied()

    rt = runtime(tmp_path, "unused", run_dir=uri, shards=2, envs_per_worker=1, steps=1200,
                 eval_episodes=0, checkpoint_interval=10_000, checkpoint_seconds=0,
                 progress_seconds=0.3, audit_replay=True)
    with pytest.raises(DriverDied):
        run(TinyAgentConfig(seed=7), rt, on_progress=die)
    local = str(tmp_path / "uri-run")
    assert sorted(os.listdir(os.path.join(local, "replay"))) == ["shard_0", "shard_1"]
    assert os.path.isfile(os.path.join(local, "counters.json"))

    held = {}

    def audit_at_start(rec, driver):
        import ray

        if not held:
            for keys in ray.get([sh.chunk_keys.remote() for sh in driver.shards]):
                held.update({(str(k), int(v)): True for k, v in keys})

    result = run(None, resume=uri, on_progress=audit_at_start)
    s = result.summary
    assert seen["acked"] and seen["acked"] <= set(held), "acknowledged chunks lost with the driver"
    first = seen["rec"]
    assert s["epoch"] == 1 and s["env_steps"] >= 1200
    assert s["updates"] >= first["updates"] and s["replay_inserted"] >= first["replay_inserted"]
    assert_monotonic(result.history)
    assert os.path.isfile(os.path.join(local, "report.md"))
    rows = [r for r in read_metrics(os.path.join(local, "metrics.jsonl")) if "updates" in r]
    assert [r["env_steps"] for r in rows] == sorted(r["env_steps"] for r in rows)


def test_two_data_parallel_learners_stay_equal_and_survive_a_killed_rank(ray_session, tmp_path):
    import ray

    from distwm.runtime import run

    digests, killed = [], []

    def watch(rec, driver):
        if len(driver.learners) != 2 or rec["updates"] < 10:
            return
        if not digests:  # both ranks hold the same weights after updates
            digests.append(ray.get([lr.weights_digest.remote() for lr in driver.learners]))
        elif not killed:
            killed.append(sigkill(driver, "learner", 1))

    rt = runtime(tmp_path, "dp", learners=2, workers=2, envs_per_worker=1, shards=2, steps=1600,
                 eval_episodes=0, checkpoint_interval=40, progress_seconds=0.3,
                 learner_group_timeout=20)
    result = run(TinyAgentConfig(seed=8), rt, on_progress=watch)
    s = result.summary
    assert digests and digests[0][0] == digests[0][1]
    assert killed and s["restarts"] == {"learner": 1} and s["learners"] == 2
    assert s["env_steps"] >= 1600 and s["metric_max"]["seq_violations"] == 0
    # an update replays one batch per learner: the ratio holds with half the updates
    assert s["replay_sampled"] >= s["updates"] * 2 * s["batch_steps"]
    assert s["replay_ratio"] == pytest.approx(s["target_ratio"], rel=0.15)
    assert_monotonic(result.history)
