"""The REINFORCE imagination: one batched actor pass, and the rollout split over threads."""

from __future__ import annotations

import threading

import pytest
import torch

from dreamer_helpers import OBS_CASES, random_batch, tiny_config
from distwm.blocks.dreamer_distributions import sample_index, sampling_generator
from distwm.configs.dreamer_config import DreamerConfig
from distwm.models.dreamer import split_rollout
from distwm.models.dreamer.core import DreamerCore


def _core(**fields) -> DreamerCore:
    torch.manual_seed(0)
    return DreamerCore(tiny_config("v3", imagine_horizon=4, **fields), OBS_CASES["vector"], 3,
                       discrete=True)


def _starts(core: DreamerCore, rows: int = 12) -> tuple[dict, torch.Tensor]:
    batch = random_batch(OBS_CASES["vector"], 3, True, batch=2, steps=rows // 2)
    data = core._batch_to_tensors(batch)
    with torch.no_grad():
        _, post, _ = core.model_loss(data)
    return {k: v.detach() for k, v in post.items()}, data["is_terminal"]


def _flat(start: dict) -> dict:
    return {k: v.reshape(-1, *v.shape[2:]) for k, v in start.items()}


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("split", [1, 2])
def test_batched_actor_outputs_are_the_per_step_actor_and_train_it(split, two_threads):
    core = _core(imagine_split=split)
    start, term = _starts(core)
    torch.manual_seed(1)
    imag = core.imagine(start, term)
    assert imag.actor_raw.shape[:2] == (5, 12) and imag.actor_raw.requires_grad
    with torch.no_grad():  # what the rollout's actor computed in each state, step by step
        feat = imag.feat
        steps = [core.behavior.actor.mlp(type(feat)(feat.index[t], feat.rest[t], feat.width))
                 for t in range(feat.index.shape[0])]
    torch.testing.assert_close(imag.actor_raw, torch.stack(steps), rtol=1e-5, atol=1e-6)
    loss, _ = core.actor_loss(imag)
    loss.backward()
    grads = [p.grad for p in core.behavior.actor.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_split_rollout_is_each_part_rolled_out_alone_in_order(two_threads):
    core = _core(imagine_split=2)
    start = _flat(_starts(core)[0])
    seen: set = set()
    policy = _recording_policy(core, seen)
    rssm = core.world_model.rssm
    torch.manual_seed(5)
    with torch.no_grad():
        feat, actions = split_rollout.imagine_onehot(rssm, policy, start, 4, 2, _nothing)
    assert torch.get_num_threads() == 2  # the caller's threads again
    # two threads (the caller's and one more), each with one intra-op thread
    assert {name for name, _ in seen} == {threading.current_thread().name, "imagine-part-1"}
    assert {threads for _, threads in seen} == {1}
    torch.manual_seed(5)
    seeds = torch.randint(0, 2 ** 62, (2,)).tolist()
    torch.set_num_threads(1)  # as each part ran (BLAS may round otherwise on more threads)
    for part, rows in enumerate((slice(0, 6), slice(6, 12))):
        generator = torch.Generator().manual_seed(seeds[part])
        with torch.no_grad(), sampling_generator(generator):
            alone, alone_actions = rssm.imagine_onehot(
                policy, {k: v[rows] for k, v in start.items()}, 4)
        assert torch.equal(feat.index[:, rows], alone.index)
        assert torch.equal(feat.rest[:, rows], alone.rest)
        assert torch.equal(actions[:, rows], alone_actions)


def test_split_update_is_reproducible_and_differs_only_in_its_draws(two_threads):
    def run(split: int, seed: int) -> dict:
        core = _core(imagine_split=split)
        batch = random_batch(OBS_CASES["vector"], 3, True, batch=2, steps=6)
        torch.manual_seed(seed)
        return core.update({"sequences": batch})

    first, again = run(2, 7), run(2, 7)
    assert first == again
    plain = run(1, 7)
    assert first["model_loss"] == plain["model_loss"]  # the world-model step is the same
    assert first["actor_loss"] != plain["actor_loss"]  # other random draws in imagination


def test_compiled_split_update_is_the_plain_split_update(two_threads, monkeypatch):
    from distwm.models.dreamer import acceleration

    torch._dynamo.reset()
    monkeypatch.setattr(acceleration, "BACKEND", "aot_eager")  # the traced path, no codegen
    batch = random_batch(OBS_CASES["vector"], 3, True, batch=2, steps=6)
    metrics = []
    for speed in ({}, {"compile": "default"}):
        core = _core(imagine_split=2, **speed)
        torch.manual_seed(3)
        metrics.append(core.update({"sequences": batch}))
    torch._dynamo.reset()
    assert metrics[0].keys() == metrics[1].keys()
    for key in metrics[0]:
        assert metrics[1][key] == pytest.approx(metrics[0][key], rel=1e-4, abs=1e-4), key


def test_a_failing_part_raises_in_the_caller(two_threads):
    core = _core(imagine_split=2)
    start = _flat(_starts(core)[0])

    def policy(feat):
        if threading.current_thread().name == "imagine-part-1":
            raise RuntimeError("part 1 failed")
        return _recording_policy(core, set())(feat)

    with torch.no_grad(), pytest.raises(RuntimeError, match="part 1 failed"):
        split_rollout.imagine_onehot(core.world_model.rssm, policy, start, 2, 2, _nothing)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("fields, threads, parts", [
    ({"imagine_split": 2}, 2, 2), ({"imagine_split": 4}, 2, 2), ({"imagine_split": 2}, 1, 1),
    ({"imagine_split": 1}, 2, 1), ({"imagine_split": 2, "compile": "default"}, 2, 2)])
def test_parts_follow_the_field_the_threads_and_compile(fields, threads, parts):
    core = _core(**fields)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert split_rollout.parts(core.behavior.cfg, core.behavior) == parts
    finally:
        torch.set_num_threads(before)


def test_continuous_actions_do_not_split(two_threads):
    torch.manual_seed(0)
    core = DreamerCore(tiny_config("v3-2024", imagine_split=2), OBS_CASES["vector"], 2,
                       discrete=False)
    assert split_rollout.parts(core.behavior.cfg, core.behavior) == 1


def test_sampling_generator_is_per_thread_and_scoped():
    probs = torch.full((4000, 8), 1 / 8)
    with sampling_generator(torch.Generator().manual_seed(3)):
        a = sample_index(probs)
    with sampling_generator(torch.Generator().manual_seed(3)):
        b = sample_index(probs)
        other: list = []
        worker = threading.Thread(target=lambda: other.append(sample_index(probs)))
        torch.manual_seed(3)
        worker.start()
        worker.join()
    assert torch.equal(a, b)
    torch.manual_seed(3)  # the other thread drew from the default generator
    assert torch.equal(other[0], sample_index(probs))


@pytest.mark.parametrize("value", [0, 1.5, True])
def test_bad_imagine_split_is_named(value):
    with pytest.raises(ValueError, match=rf"DreamerConfig\.imagine_split.*{value!r}"):
        DreamerConfig(imagine_split=value)


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def _recording_policy(core: DreamerCore, seen: set):
    actor = core.behavior.actor

    def policy(feat):
        seen.add((threading.current_thread().name, torch.get_num_threads()))
        return actor.dist_from_raw(actor.mlp(feat)).sample()

    return policy


def test_mixed_probs_in_place_without_a_graph_and_differentiable_with_one():
    from distwm.blocks.dreamer_distributions import mixed_probs

    logits = torch.randn(5, 4, 8, requires_grad=True)
    with torch.no_grad():
        fast = mixed_probs(logits, 0.01)
    slow = mixed_probs(logits, 0.01)
    torch.testing.assert_close(fast, 0.99 * torch.softmax(logits.detach(), -1) + 0.01 / 8,
                               rtol=0, atol=0)
    torch.testing.assert_close(slow.detach(), fast, rtol=0, atol=0)
    (slow[..., 0].sum()).backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0


@pytest.mark.parametrize("per_step, free", [(True, 1.0), (False, 1.0), (True, 0.0)])
def test_shared_kl_loss_is_the_two_balanced_kls(per_step, free):
    core = _core(free_nats_per_step=per_step, free_nats=free, kl_dyn_scale=0.5, kl_rep_scale=0.1)
    model = core.world_model
    logits = lambda: (torch.randn(2, 6, 4, 4) * 2).requires_grad_(True)  # noqa: E731
    post_logits, prior_logits = logits(), logits()

    def states():
        post = {"logits": torch.log_softmax(post_logits, -1)}
        prior = {"logits": torch.log_softmax(prior_logits, -1)}
        return post, prior

    loss, dyn, rep = model.kl_loss(*states())
    grads = torch.autograd.grad(loss, (post_logits, prior_logits))
    # the two KLs of DreamerV2/V3, written out
    post, prior = states()
    dist = lambda s: __import__("distwm.blocks.dreamer_distributions", fromlist=["x"]).OneHotDist(  # noqa: E731
        s["logits"], 0.0, event_dims=1)
    sg = lambda s: {k: v.detach() for k, v in s.items()}  # noqa: E731
    dyn_kl = dist(sg(post)).kl(dist(prior))
    rep_kl = dist(post).kl(dist(sg(prior)))
    clamp = (lambda x: x.clamp(min=free).mean()) if per_step else (lambda x: x.mean().clamp(min=free))
    expected = 0.5 * clamp(dyn_kl) + 0.1 * clamp(rep_kl)
    expected_grads = torch.autograd.grad(expected, (post_logits, prior_logits))
    torch.testing.assert_close(loss, expected)
    assert float(dyn) == pytest.approx(float(dyn_kl.mean())) and float(rep) == pytest.approx(float(rep_kl.mean()))
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)
    assert float(grads[0].abs().sum()) > 0 and float(grads[1].abs().sum()) > 0


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_replayed_first_layer_gives_the_plain_mlp_and_its_gradients(norm):
    from distwm.blocks.dreamer_blocks import MLP, OneHotFeatures

    torch.manual_seed(0)
    mlp = MLP(4 * 3 + 5, 8, 2, layer_norm=True, out_dim=3, norm=norm).double()
    assert mlp.replays_first_layer()
    index = torch.randint(0, 3, (2, 7, 4)) + torch.arange(4) * 3
    feat = OneHotFeatures(index, torch.randn(2, 7, 5, dtype=torch.float64), 12)
    with torch.no_grad():
        first, out = mlp.first_and_output(feat)
    replayed = mlp.from_first(first, feat)
    plain = mlp(feat)
    torch.testing.assert_close(out, plain.detach())
    torch.testing.assert_close(replayed, plain)
    grad_out = torch.randn_like(plain)
    params = list(mlp.parameters())
    got = torch.autograd.grad(replayed, params, grad_out)
    want = torch.autograd.grad(plain, params, grad_out)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    assert not MLP(6, 8, 1, layer_norm=False).replays_first_layer()  # an in-place act follows
