"""The speed switches of the Dreamer update (``distwm.models.dreamer.acceleration``) and the
fast paths of the plain update compute the same numbers as the reference formulas."""

from __future__ import annotations

import copy
import logging
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distwm.blocks.dreamer_blocks import OneHotFeatures, linear_features, reuse_embedding_tables
from distwm.blocks.dreamer_distributions import (
    OneHotDist,
    TwoHotDist,
    mixed_probs,
    sample_index,
    two_hot_parts,
)
from distwm.blocks.returns import TwoHotEncoder
from distwm.configs.dreamer_config import DreamerConfig
from distwm.models.dreamer import DreamerCore, acceleration
from distwm.utils import precision
from dreamer_helpers import OBS_CASES, random_batch, tiny_config


@pytest.fixture
def fast_backend(monkeypatch):
    """Compile with ``aot_eager`` (dynamo tracing and AOT autograd, no code generation): the
    compiled code path in seconds."""
    torch._dynamo.reset()
    monkeypatch.setattr(acceleration, "BACKEND", "aot_eager")
    yield
    torch._dynamo.reset()


def _agent(version: str, obs: str = "vector", **speed) -> DreamerCore:
    torch.manual_seed(0)
    return DreamerCore(tiny_config(version, **speed), OBS_CASES[obs], 2, discrete=True)


def _run(agent: DreamerCore, updates: int, obs: str = "vector") -> list[dict]:
    out = []
    for i in range(updates):
        batch = random_batch(OBS_CASES[obs], 2, True, seed=i)
        torch.manual_seed(100 + i)
        out.append(agent.update({"sequences": batch}))
    return out


def _assert_same(plain: DreamerCore, fast: DreamerCore, plain_metrics, fast_metrics, tol=1e-4):
    for a, b in zip(plain_metrics, fast_metrics):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=tol, abs=tol), key
    for module in ("world_model", "behavior"):
        ref = getattr(plain, module).state_dict()
        got = getattr(fast, module).state_dict()
        assert list(ref) == list(got)  # the same parameter names: checkpoints load alike
        for key in ref:
            torch.testing.assert_close(got[key], ref[key], rtol=tol, atol=tol, msg=key)


# -- the compile switch -------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v3", "v3-2024"])
def test_compiled_update_is_the_plain_update(version, fast_backend):
    plain, fast = _agent(version), _agent(version, compile="default")
    plain_metrics, fast_metrics = _run(plain, 2), _run(fast, 2)
    compiled = acceleration.compiled(fast.world_model.rssm)
    assert {"observe", "imagine_step", "imagine_onehot"} <= set(compiled)
    assert {"actor", "actor_onehot"} <= set(acceleration.compiled(fast.behavior))
    assert not acceleration.compiled(plain.world_model.rssm)
    _assert_same(plain, fast, plain_metrics, fast_metrics)


def test_compiled_dynamics_backprop_update(fast_backend):
    """Continuous actions (dynamics backprop through the compiled imagination step)."""
    def agent(**speed):
        torch.manual_seed(0)
        return DreamerCore(tiny_config("v3", **speed), OBS_CASES["vector"], 2, discrete=False)

    plain, fast = agent(), agent(compile="default")
    metrics = []
    for model in (plain, fast):
        batch = random_batch(OBS_CASES["vector"], 2, False)
        torch.manual_seed(7)
        metrics.append([model.update({"sequences": batch})])
    _assert_same(plain, fast, *metrics)


def test_compile_is_lazy_and_copies_drop_it(fast_backend):
    agent = _agent("v3", compile="default")
    assert not acceleration.compiled(agent.world_model.rssm)  # nothing compiled when built
    _run(agent, 1)
    assert acceleration.compiled(agent.world_model.rssm)
    clone = copy.deepcopy(agent.world_model)
    assert not acceleration.compiled(clone.rssm)
    restored = pickle.loads(pickle.dumps(agent.world_model))
    assert not acceleration.compiled(restored.rssm)
    fresh = _agent("v3")
    fresh.world_model.load_state_dict(agent.world_model.state_dict())  # checkpoints load


def test_cuda_graph_mode_on_cpu_falls_back(caplog):
    with caplog.at_level(logging.WARNING):
        assert acceleration.compile_mode_for("reduce-overhead", "cpu") == "default"
    assert "reduce-overhead" in caplog.text and "default" in caplog.text
    assert acceleration.compile_mode_for("reduce-overhead", "cuda") == "reduce-overhead"
    assert acceleration.compile_mode_for("off", "cpu") is None


def test_bf16_autocast_without_native_bf16_raises(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    agent = _agent("v3", autocast="bf16")
    with pytest.raises(ValueError, match=r"autocast='bf16'.*CUDA.*\('off',\)"):
        _run(agent, 1)


@pytest.mark.skip_ok_in_ci("hardware, not an installable dependency: CPUs without AMX / AVX512-BF16")
@pytest.mark.skipif(not acceleration.cpu_has_bf16(), reason="this CPU has no native bf16 matmuls")
@pytest.mark.parametrize("version", ["v3", "v3-2024"])
def test_bf16_autocast_update_is_the_plain_update_to_bf16_tolerance(version):
    plain, fast = _agent(version), _agent(version, autocast="bf16")
    plain_metrics, fast_metrics = _run(plain, 1), _run(fast, 1)
    # the world-model losses agree to bf16 tolerance; the imagination samples its own
    # trajectories (a probability rounded to bf16 can flip a sampled class), so its losses
    # are only checked to be finite
    for key in ("model_loss", "reward_loss", "state_loss", "kl_dyn", "kl_rep"):
        assert fast_metrics[0][key] == pytest.approx(plain_metrics[0][key], rel=0.02, abs=0.02), key
    assert all(np.isfinite(v) for v in fast_metrics[0].values())
    assert fast_metrics[0]["skipped"] == 0.0
    for name, param in fast.world_model.named_parameters():
        assert param.dtype == torch.float32, name  # bf16 computes, float32 parameters


@pytest.mark.parametrize("field, value", [("compile", "fast"), ("autocast", "fp16"),
                                          ("channels_last", "yes")])
def test_bad_switch_values_name_the_choices(field, value):
    with pytest.raises(ValueError, match=rf"DreamerConfig\.{field}.*{value!r}"):
        DreamerConfig(**{field: value})
    with pytest.raises(ValueError, match="off"):
        DreamerConfig(compile="fast")


def test_channels_last_update_is_the_plain_update():
    plain, fast = _agent("v3", "image"), _agent("v3", "image", channels_last=True)
    plain_metrics, fast_metrics = _run(plain, 2, "image"), _run(fast, 2, "image")
    conv = next(m for m in fast.world_model.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    _assert_same(plain, fast, plain_metrics, fast_metrics)


# -- the fast paths of the plain update -------------------------------------------------------
def test_sample_index_is_the_counting_inverse_cdf():
    logits = torch.randn(64, 8, 16) * 3
    probs = mixed_probs(logits, 0.01)
    torch.manual_seed(3)
    got = sample_index(probs)
    torch.manual_seed(3)
    uniform = torch.rand(64, 8, 1)
    expected = (probs.cumsum(-1) < uniform).sum(-1).clamp(max=15)
    assert torch.equal(got, expected)
    for unimix in (0.0, 0.01):
        torch.testing.assert_close(mixed_probs(logits, unimix), OneHotDist(logits, unimix).probs,
                                   rtol=0, atol=0)


@pytest.mark.parametrize("spacing", ["symlog", "symexp"])
def test_gathered_two_hot_loss_is_the_dense_one(spacing):
    encoder = TwoHotEncoder(41, 8.0, spacing)
    target = torch.cat([torch.randn(200) * torch.logspace(-3, 4, 200),
                        torch.tensor([0.0, 1e6, -1e6])])
    low, high, w_low, w_high = two_hot_parts(encoder, target)
    dense = torch.zeros(target.shape[0], 41)
    dense.scatter_add_(-1, low[:, None], w_low[:, None]).scatter_add_(-1, high[:, None], w_high[:, None])
    torch.testing.assert_close(dense, encoder.encode_values(target), rtol=0, atol=1e-7)
    logits = torch.randn(target.shape[0], 41, requires_grad=True)
    dist = TwoHotDist(logits, encoder)
    got = dist.log_prob(target)
    expected = -encoder.loss(logits, target)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    grad_got, = torch.autograd.grad(got.sum() + dist.log_prob(target * 2).sum(), logits)
    grad_ref, = torch.autograd.grad(expected.sum() - encoder.loss(logits, target * 2).sum(), logits)
    torch.testing.assert_close(grad_got, grad_ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="target shape"):
        dist.log_prob(target[:3])


def test_one_hot_features_gradient_is_the_dense_one():
    linear = torch.nn.Linear(6 * 4 + 3, 5)
    index = torch.randint(0, 4, (50, 6)) + torch.arange(6) * 4
    rest = torch.randn(50, 3)
    feat = OneHotFeatures(index, rest, 24)
    with reuse_embedding_tables():
        out = linear_features(linear, feat)
        again = linear_features(linear, feat)
    expected = F.linear(feat.dense(), linear.weight, linear.bias)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(again, expected)
    grad_out = torch.randn_like(out)
    got = torch.autograd.grad(out, linear.weight, grad_out)[0]
    ref = torch.autograd.grad(expected, linear.weight, grad_out)[0]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    with reuse_embedding_tables():  # a changed weight is not served from the cache
        linear_features(linear, feat)
        with torch.no_grad():
            linear.weight.add_(1.0)
        torch.testing.assert_close(linear_features(linear, feat),
                                   F.linear(feat.dense(), linear.weight, linear.bias))


def test_one_hot_features_dense_gradient_in_row_blocks(monkeypatch):
    import distwm.blocks.dreamer_blocks as blocks

    monkeypatch.setattr(blocks, "_BACKWARD_ROWS", 16)  # 50 rows: blocks of 16, 16, 16 and 2
    # float64: the dense path (GPU, bf16 and compiled code take it too); CPU float32 is sparse
    linear = torch.nn.Linear(6 * 4 + 3, 5).double()
    index = torch.randint(0, 4, (50, 6)) + torch.arange(6) * 4
    feat = OneHotFeatures(index, torch.randn(50, 3, dtype=torch.float64), 24)
    out = linear_features(linear, feat)
    expected = F.linear(feat.dense(), linear.weight, linear.bias)
    grad_out = torch.randn_like(out)
    got = torch.autograd.grad(out, linear.weight, grad_out)[0]
    ref = torch.autograd.grad(expected, linear.weight, grad_out)[0]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


# -- threads and memory ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v3", "v3-2024"])
@pytest.mark.parametrize("wanted, loop", [(1, 1), (0, 3)])
def test_observe_loop_runs_on_observe_threads_forward_and_backward(version, wanted, loop, monkeypatch):
    agent = _agent(version, observe_threads=wanted)
    rssm = agent.world_model.rssm
    seen: dict[str, set] = {"loop forward": set(), "loop backward": set(), "imagine": set(),
                            "encoder backward": set(), "head backward": set()}

    def watch(module, label):  # the threads when the gradient reaches the module's output
        def forward_hook(_module, _inputs, output):
            tensor = output if isinstance(output, torch.Tensor) else output.logits
            if tensor.requires_grad:
                tensor.register_hook(lambda g: seen[label].add(torch.get_num_threads()))
        module.register_forward_hook(forward_hook)

    body = rssm._observe_body

    def record_body(*args, **kwargs):
        seen["loop forward"].add(torch.get_num_threads())
        out = body(*args, **kwargs)
        out["deter"].register_hook(lambda g: seen["loop backward"].add(torch.get_num_threads()))
        return out

    monkeypatch.setattr(rssm, "_observe_body", record_body)
    imagine = agent.behavior.imagine
    monkeypatch.setattr(agent.behavior, "imagine", lambda *a, **k: (
        seen["imagine"].add(torch.get_num_threads()), imagine(*a, **k))[1])
    watch(agent.world_model.encoder, "encoder backward")
    watch(agent.world_model.reward.mlp, "head backward")
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        _run(agent, 1)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert seen["loop forward"] == {loop} and seen["loop backward"] == {loop}
    # everything around the loop keeps every thread, and the update leaves them as they were
    assert seen["imagine"] == seen["encoder backward"] == seen["head backward"] == {3}
    assert after == 3


@pytest.mark.parametrize("field, value", [("observe_threads", -1), ("observe_threads", 1.5),
                                          ("keep_freed_memory", "yes")])
def test_bad_thread_and_memory_values_are_named(field, value):
    with pytest.raises(ValueError, match=rf"DreamerConfig\.{field}.*{value!r}"):
        DreamerConfig(**{field: value})


@pytest.mark.skip_ok_in_ci("a glibc detail: other C libraries have no mallopt")
def test_keep_freed_memory_keeps_what_the_process_frees():
    import ctypes.util
    import os
    import sys

    from distwm.utils.allocator import keep_freed_memory

    if not sys.platform.startswith("linux") or "c" not in (ctypes.util.find_library("c") or ""):
        pytest.skip("not glibc Linux")
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # once per process, then the same answer

    def resident_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    before = resident_mb()
    blocks = []  # 16 MB blocks from the heap, live at once, until the process has grown 128 MB
    while resident_mb() - before < 128 and len(blocks) < 256:  # (earlier tests left free memory)
        blocks.append(torch.ones(16 * 2**20 // 4))
    grown = resident_mb() - before
    del blocks
    kept = resident_mb() - before
    # glibc's default trims the heap's free top back to the OS here (kept ~0 MB): the next
    # update would fault every page in again
    assert grown > 100 and kept > 0.9 * grown, f"kept {kept:.0f} MB of {grown:.0f} MB"
