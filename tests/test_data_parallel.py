"""Data-parallel updates (:mod:`distwm.utils.distributed`): two spawned processes form a gloo
group on 127.0.0.1 (no Ray); each updates its agent on its own batches.

One spawn runs every scenario (a spawn costs seconds); each scenario saves what its rank saw,
and the tests below compare the two ranks with each other and with one agent trained in this
process on the two batches concatenated. A rank that hung in a collective fails the fixture
(the processes are joined with a timeout and killed).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import traceback

import numpy as np
import pytest
import torch

from distwm.utils import distributed

WORLD = 2
UPDATES = 3
JOIN_TIMEOUT_S = 180  # both ranks together, all scenarios; a hang fails the tests
GROUP_TIMEOUT_S = 30  # a rank left waiting in a collective raises after this


# -- batches -------------------------------------------------------------------------------------

def tiny_batch(seed: int, batch: int = 4, steps: int = 8) -> dict[str, np.ndarray]:
    """A SignEnv-like replay batch; ``is_first`` only at ``t=0``, so every batch has as many
    unmasked steps and TinyAgent's masked mean is a mean over the concatenated batch."""
    rng = np.random.default_rng(seed)
    state = rng.normal(size=(batch, steps, 4)).astype(np.float32)
    state[..., 1] = np.arange(steps)
    action = np.eye(2, dtype=np.float32)[rng.integers(0, 2, (batch, steps))]
    reward = rng.integers(0, 2, (batch, steps)).astype(np.float32)
    is_first = np.zeros((batch, steps), bool)
    is_first[:, 0] = True
    action[:, 0] = 0.0
    reward[:, 0] = 0.0
    return {"state": state, "action": action, "reward": reward, "is_first": is_first,
            "is_terminal": np.zeros((batch, steps), bool), "is_last": np.zeros((batch, steps), bool)}


def dreamer_batch(seed: int) -> dict[str, np.ndarray]:
    from dreamer_helpers import random_batch

    return random_batch({"state": (5,)}, 3, True, batch=2, steps=6, seed=seed)


def planet_batch(seed: int) -> dict[str, np.ndarray]:
    out = tiny_batch(seed, batch=4, steps=8)
    out["action"] = out["action"] * 2.0 - 1.0
    out["action"][:, 0] = 0.0
    return out


def concat(*batches):
    return {k: np.concatenate([b[k] for b in batches], 0) for k in batches[0]}


def batch_seed(rank: int, update: int) -> int:
    return 100 * update + rank


# -- agents --------------------------------------------------------------------------------------

def tiny_agent(seed: int = 0):
    from runtime_agent import TinyAgent, TinyAgentConfig

    torch.manual_seed(seed)
    return TinyAgent(TinyAgentConfig(seed=seed), obs_dim=4, num_actions=2)


def deterministic_latents(patch) -> None:
    """Dreamer's latents at their mode (straight-through), so the world-model loss is a
    function of the batch alone and two ranks' averaged step equals one step on both."""
    from distwm.blocks.dreamer_distributions import OneHotDist

    patch(OneHotDist, "sample", OneHotDist.mode)


def dreamer_agent():
    from dreamer_helpers import tiny_config
    from distwm.models.dreamer.core import DreamerCore

    torch.manual_seed(0)
    return DreamerCore(tiny_config("v3"), {"state": (5,)}, 3, discrete=True)


def planet_agent():
    from planet_testing import tiny_planet_config
    from distwm.models.planet.core import PlanetCore

    torch.manual_seed(0)
    return PlanetCore(tiny_planet_config(), (4,), 2, obs_key="state")


def state_of(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# -- the scenarios (run in each spawned rank) ------------------------------------------------------

def scenario_tiny(rank: int) -> dict:
    agent = tiny_agent(seed=rank)  # different initial weights, then rank 0's
    before = distributed.replicas_agree(agent.model)
    distributed.broadcast_module_state(agent.model, src=0)
    after = distributed.replicas_agree(agent.model)
    losses = [agent.update({"sequences": tiny_batch(batch_seed(rank, k))})["loss"] for k in range(UPDATES)]
    return {"agree_before_broadcast": before, "agree_after_broadcast": after,
            "agree": distributed.replicas_agree(agent.model), "losses": losses,
            "model": state_of(agent.model)}


def scenario_dreamer(rank: int) -> dict:
    deterministic_latents(setattr)
    agent = dreamer_agent()
    norm, percentiles = agent.behavior.return_norm, []
    update_norm = norm.update

    def recording_update(returns):  # this rank's own return percentiles
        percentiles.append(torch.quantile(returns.detach().flatten().float(), norm.quantiles))
        return update_norm(returns)

    norm.update = recording_update
    metrics = [agent.update({"sequences": dreamer_batch(batch_seed(rank, k))}) for k in range(UPDATES)]
    return {"metrics": metrics, "percentiles": percentiles, "world_model": state_of(agent.world_model),
            "behavior": state_of(agent.behavior), "updates": agent.updates,
            "agree": distributed.replicas_agree(agent.world_model)
            and distributed.replicas_agree(agent.behavior)}


def scenario_dreamer_skip(rank: int) -> dict:
    """Update 1: rank 1's input is NaN (it skips before the world-model all-reduce). Update 2:
    rank 0's imagined returns are NaN (after the world-model step, before the actor-critic
    all-reduce). Updates 0 and 3 are normal."""
    agent = dreamer_agent()
    imagine = agent.imagine
    metrics, snapshots = [], []
    for k in range(4):
        batch = dreamer_batch(batch_seed(rank, k))
        if k == 1 and rank == 1:
            batch["state"][0, 2, 1] = np.nan
        if k == 2 and rank == 0:
            def bad_imagine(post, is_terminal):
                imag = imagine(post, is_terminal)
                imag.returns = imag.returns * float("nan")
                return imag
            agent.imagine = bad_imagine
        metrics.append(agent.update({"sequences": batch}))
        agent.imagine = imagine
        snapshots.append({"world_model": state_of(agent.world_model), "behavior": state_of(agent.behavior)})
    return {"metrics": metrics, "snapshots": snapshots, "updates": agent.updates,
            "nonfinite_updates": agent.nonfinite_updates,
            "agree": distributed.replicas_agree(agent.world_model)
            and distributed.replicas_agree(agent.behavior)}


def scenario_planet(rank: int) -> dict:
    """PlaNet: update 1 has a NaN reward on rank 0 (a non-finite loss there)."""
    agent = planet_agent()
    metrics = []
    for k in range(UPDATES):
        batch = planet_batch(batch_seed(rank, k))
        if k == 1 and rank == 0:
            batch["reward"][1, 3] = np.nan
        metrics.append(agent.update({"sequences": batch}))
    return {"skipped": [m["skipped"] for m in metrics], "updates": agent.updates,
            "agree": distributed.replicas_agree(agent.rssm), "rssm": state_of(agent.rssm)}


def scenario_collectives(rank: int) -> dict:
    out = {"active": distributed.is_active(), "world_size": distributed.world_size(),
           "rank": distributed.rank(),
           "one_false": distributed.all_agree(rank == 0), "all_true": distributed.all_agree(True)}
    agent = tiny_agent(seed=0)
    agent.updates = 7 if rank == 0 else 0
    agent.load_state_dict(distributed.broadcast_object(agent.state_dict()))
    out["broadcast_updates"] = agent.updates
    # a param without a gradient on one rank counts as zeros there
    grads = [torch.full((3,), 2.0 + rank), torch.full((2,), 4.0)]
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))]
    params[0].grad = grads[0]
    params[1].grad = grads[1] if rank == 0 else None
    extra = torch.tensor([10.0 * (rank + 1)])
    distributed.reduce_gradients(params, extra=[extra])
    out["reduced"] = [p.grad.clone() for p in params] + [extra]
    # states of different layouts raise on every rank (no rank waits)
    layer = torch.nn.Linear(2, 2 + rank)
    try:
        distributed.broadcast_module_state(layer)
        out["layout_error"] = None
    except ValueError as exc:
        out["layout_error"] = str(exc)
    return out


SCENARIOS = {f.__name__[len("scenario_"):]: f for f in
             (scenario_tiny, scenario_dreamer, scenario_dreamer_skip, scenario_planet, scenario_collectives)}


def _worker(rank: int, world: int, address: str, outdir: str) -> None:
    torch.set_num_threads(1)
    distributed.init_group(rank, world, address, timeout_s=GROUP_TIMEOUT_S)
    try:
        for name, scenario in SCENARIOS.items():
            start = time.perf_counter()
            try:
                result = scenario(rank)
            except BaseException:  # noqa: BLE001 - reported by the test that reads it
                result = {"error": traceback.format_exc()}
            result["seconds"] = time.perf_counter() - start
            torch.save(result, os.path.join(outdir, f"{name}_{rank}.pt"))
    finally:
        distributed.destroy_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """``ranks(name) -> [rank 0's result, rank 1's result]`` of scenario ``name``."""
    outdir = str(tmp_path_factory.mktemp("data_parallel"))
    ctx = torch.multiprocessing.get_context("spawn")
    address = distributed.free_address()
    env = {"OMP_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        procs = [ctx.Process(target=_worker, args=(r, WORLD, address, outdir), daemon=True)
                 for r in range(WORLD)]
        for p in procs:
            p.start()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(5)
    if hung:
        pytest.fail(f"data-parallel ranks {hung} still running after {JOIN_TIMEOUT_S} s (a hang)")
    codes = [p.exitcode for p in procs]

    def results(name: str) -> list[dict]:
        out = []
        for r in range(WORLD):
            path = os.path.join(outdir, f"{name}_{r}.pt")
            if not os.path.exists(path):
                pytest.fail(f"rank {r} wrote no result for {name!r} (exit codes {codes})")
            res = torch.load(path, weights_only=False)
            if "error" in res:
                pytest.fail(f"rank {r}, scenario {name!r}:\n{res['error']}")
            out.append(res)
        return out

    return results


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"replicas differ in {differ}"


def max_diff(a: dict, b: dict, keys=None) -> float:
    keys = a.keys() if keys is None else keys
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in keys)


# -- (a) identical replicas, equal to one agent on both batches --------------------------------------

def test_tiny_agent_ranks_stay_identical_and_equal_one_agent_on_both_batches(ranks):
    r0, r1 = ranks("tiny")
    assert not r0["agree_before_broadcast"] and r0["agree_after_broadcast"] and r1["agree_after_broadcast"]
    assert r0["agree"] and r1["agree"]
    assert_identical(r0["model"], r1["model"])

    reference, alone = tiny_agent(seed=0), tiny_agent(seed=0)
    for k in range(UPDATES):
        reference.update({"sequences": concat(tiny_batch(batch_seed(0, k)), tiny_batch(batch_seed(1, k)))})
        alone.update({"sequences": tiny_batch(batch_seed(0, k))})
    ref, own = state_of(reference.model), state_of(alone.model)
    assert max_diff(r0["model"], ref) < 1e-6
    assert max_diff(own, ref) > 1e-3  # rank 0's batch alone gives another model
    # each rank's loss is its own batch's: the ranks' losses differ
    assert r0["losses"] != r1["losses"]


def test_dreamer_ranks_stay_identical_and_world_model_equals_one_agent_on_both_batches(ranks, monkeypatch):
    r0, r1 = ranks("dreamer")
    assert r0["agree"] and r1["agree"]
    assert_identical(r0["world_model"], r1["world_model"])
    assert_identical(r0["behavior"], r1["behavior"])  # actor, critic, slow critic, return EMA
    assert r0["updates"] == r1["updates"] == UPDATES
    assert all(m["skipped"] == 0.0 for m in r0["metrics"] + r1["metrics"])
    # each rank normalised by its own returns' percentiles; the shared EMA is the EMA of the
    # ranks' mean percentiles
    mean = [(a + b) / 2 for a, b in zip(r0["percentiles"], r1["percentiles"])]
    assert not torch.equal(r0["percentiles"][0], r1["percentiles"][0])
    decay = dreamer_agent().behavior.return_norm.decay
    ema = mean[0]
    for q in mean[1:]:
        ema = decay * ema + (1 - decay) * q
    low, high = r0["behavior"]["return_norm.low"], r0["behavior"]["return_norm.high"]
    assert torch.allclose(torch.stack([low, high]), ema, atol=1e-6)

    deterministic_latents(monkeypatch.setattr)
    reference, alone = dreamer_agent(), dreamer_agent()
    for k in range(UPDATES):
        reference.update({"sequences": concat(dreamer_batch(batch_seed(0, k)), dreamer_batch(batch_seed(1, k)))})
        alone.update({"sequences": dreamer_batch(batch_seed(0, k))})
    ref, own = state_of(reference.world_model), state_of(alone.world_model)
    # the world-model loss is a batch mean (free nats per step): exact up to float rounding
    assert max_diff(r0["world_model"], ref) < 2e-6
    assert max_diff(own, ref) > 1e-4
    # the actor is not: batch-percentile return scales (see distwm.utils.distributed)


# -- (b) a non-finite input on one rank: both skip, nobody hangs ---------------------------------------

def test_dreamer_skip_on_one_rank_is_a_skip_on_every_rank(ranks):
    r0, r1 = ranks("dreamer_skip")
    assert [m["skipped"] for m in r0["metrics"]] == [m["skipped"] for m in r1["metrics"]] == [0, 1, 1, 0]
    assert r0["updates"] == r1["updates"] == 2
    assert r0["nonfinite_updates"] == r1["nonfinite_updates"] == 2
    assert r0["agree"] and r1["agree"]
    for s0, s1 in zip(r0["snapshots"], r1["snapshots"]):
        assert_identical(s0["world_model"], s1["world_model"])
        assert_identical(s0["behavior"], s1["behavior"])
    snaps = r0["snapshots"]
    # update 1 skipped before the world-model step: nothing changed
    assert_identical(snaps[1]["world_model"], snaps[0]["world_model"])
    assert_identical(snaps[1]["behavior"], snaps[0]["behavior"])
    # update 2: the world-model step was taken on both, the actor-critic step skipped on
    # both, and the return normaliser is as it was
    assert max_diff(snaps[2]["world_model"], snaps[1]["world_model"]) > 0
    assert_identical(snaps[2]["behavior"], snaps[1]["behavior"])
    assert max_diff(snaps[3]["behavior"], snaps[2]["behavior"]) > 0


def test_planet_skip_on_one_rank_is_a_skip_on_every_rank(ranks):
    r0, r1 = ranks("planet")
    assert r0["skipped"] == r1["skipped"] == [0.0, 1.0, 0.0]
    assert r0["updates"] == r1["updates"] == 2
    assert r0["agree"] and r1["agree"]
    assert_identical(r0["rssm"], r1["rssm"])


def test_collectives(ranks):
    r0, r1 = ranks("collectives")
    for r, res in enumerate((r0, r1)):
        assert res["active"] and res["world_size"] == WORLD and res["rank"] == r
        assert res["one_false"] is False and res["all_true"] is True
        assert res["broadcast_updates"] == 7
        grad0, grad1, extra = res["reduced"]
        assert torch.equal(grad0, torch.full((3,), 2.5))
        assert torch.equal(grad1, torch.full((2,), 2.0))  # (4 + zeros) / 2
        assert torch.equal(extra, torch.tensor([15.0]))
        assert res["layout_error"] and "differ" in res["layout_error"]


# -- (c) no group: no-ops ---------------------------------------------------------------------------

def test_without_a_group_everything_is_a_no_op():
    assert not distributed.is_active()
    assert (distributed.world_size(), distributed.rank()) == (1, 0)
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    params[0].grad = torch.tensor([1.0, 2.0])
    extra = torch.tensor([3.0])
    distributed.reduce_gradients(params, extra=[extra])
    distributed.join_skipped(params)
    assert torch.equal(params[0].grad, torch.tensor([1.0, 2.0])) and params[1].grad is None
    assert torch.equal(extra, torch.tensor([3.0]))
    assert distributed.all_agree(False) is False and distributed.all_agree(True) is True
    state = {"x": 1}
    assert distributed.broadcast_object(state) is state
    assert distributed.replicas_agree(torch.nn.Linear(2, 2))
    distributed.broadcast_module_state(torch.nn.Linear(2, 2))
    distributed.destroy_group()


def test_one_rank_group_changes_nothing():
    batches = [{"sequences": tiny_batch(k)} for k in range(2)]
    plain = tiny_agent()
    for b in batches:
        plain.update(b)
    distributed.init_group(0, 1, distributed.free_address(), timeout_s=10)
    try:
        assert distributed.is_active() and distributed.world_size() == 1
        grouped = tiny_agent()
        for b in batches:
            grouped.update(b)
    finally:
        distributed.destroy_group()
    assert not distributed.is_active()
    assert_identical(state_of(plain.model), state_of(grouped.model))


def test_init_group_refuses_bad_arguments():
    address = "tcp://127.0.0.1:1"
    with pytest.raises(ValueError, match="rank < world_size"):
        distributed.init_group(2, 2, address)
    with pytest.raises(ValueError, match="backend"):
        distributed.init_group(0, 1, address, backend="mpi")
    with pytest.raises(ValueError, match="timeout_s"):
        distributed.init_group(0, 1, address, timeout_s=0)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        distributed.init_group(0, 1, address, backend="nccl", device="cpu")
    assert not distributed.is_active()


def test_free_address_is_a_tcp_address_of_this_host():
    address = distributed.free_address()
    host, port = address[len("tcp://"):].rsplit(":", 1)
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # the node's IP when a Ray session is open
        from ray.util import get_node_ip_address

        expected = get_node_ip_address()
    else:
        expected = "127.0.0.1"
    assert address.startswith("tcp://") and host == expected and 0 < int(port) < 65536
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # the port is free
        sock.bind(("", int(port)))


def test_module_imports_no_torch():
    code = ("import sys, distwm, distwm.utils.distributed as d; "
            "assert not d.is_active() and d.world_size() == 1; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
