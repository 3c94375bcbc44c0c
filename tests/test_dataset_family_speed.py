"""The speed changes of Genie and I-JEPA compute what they computed before: fused AdamW equals
the unfused update, cast weights and bf16 caches give play's frames bit for bit, a finished
frame committed in the next frame's first pass leaves the same cache and samples, the float32
attention under autocast stays within bf16 tolerance of float32, the foreach EMA equals the
per-parameter one."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from distwm.configs.genie_config import genie_preset
from distwm.models.genie import Genie, GeniePlayer
from distwm.models.genie.dynamics_model import DynamicsModel
from distwm.models.genie.factory import genie_kwargs
from distwm.models.genie.maskgit import MaskGITSampler
from distwm.utils import precision
from distwm.utils.optim import fused_adamw
from hardware_marks import NEEDS_BF16_MARKS, needs_bf16


def _grads(params, seed):
    g = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-2


def test_fused_adamw_equals_adamw_and_keeps_fused_on_load():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    twin = [p.detach().clone().requires_grad_() for p in net.parameters()]
    fused = fused_adamw(net.parameters(), lr=1e-2, weight_decay=0.1)
    plain = torch.optim.AdamW(twin, lr=1e-2, weight_decay=0.1)
    assert fused.param_groups[0]["fused"] is True
    for step in range(5):
        _grads(list(net.parameters()), step)
        _grads(twin, step)
        fused.step()
        plain.step()
    for a, b in zip(net.parameters(), twin):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    fused.load_state_dict(plain.state_dict())  # an unfused state: the kernel choice stays
    assert fused.param_groups[0]["fused"] is True
    torch.testing.assert_close(fused.state[next(iter(net.parameters()))]["exp_avg"],
                               plain.state[twin[0]]["exp_avg"])


def test_cast_weights_swap_in_and_follow_weight_changes():
    layer = torch.nn.Linear(4, 3)
    cast = precision.CastWeights("bf16", layer)
    with cast.applied():
        assert layer.weight.dtype == torch.bfloat16 and layer.bias.dtype == torch.bfloat16
        first = layer.weight
    assert isinstance(layer.weight, torch.nn.Parameter) and layer.weight.dtype == torch.float32
    with torch.no_grad():
        layer.weight.add_(1.0)  # an in-place update: cast again
    with cast.applied():
        assert layer.weight is not first
        torch.testing.assert_close(layer.weight, layer._parameters["weight"])
    with precision.CastWeights("off", layer).applied():
        assert layer.weight.dtype == torch.float32
    with pytest.raises(ValueError, match=r"'fp8' is not one of \('off', 'bf16'\)"):
        precision.CastWeights("fp8", layer)


def _player_frames(model, prompt, actions, steps):
    player = GeniePlayer(model, prompt, MaskGITSampler(steps, 2.0),
                         torch.Generator().manual_seed(5))
    frames = [player.step(actions[:, t]) for t in range(actions.shape[1])]
    return torch.stack(frames, 2), torch.stack(player.tokens, 1)


@pytest.mark.parametrize("autocast", ["off", pytest.param("bf16", marks=NEEDS_BF16_MARKS)])
def test_player_equals_the_separate_commit_and_per_step_casts(autocast, monkeypatch):
    """Frames past the window (refills) with 2 MaskGIT steps: the player (cast weights, caches
    in the autocast dtype, deferred commits) against a player that commits every frame in a
    pass of its own and lets autocast cast the weights in every step."""
    torch.manual_seed(0)
    model = Genie(**genie_kwargs(genie_preset("tiny", autocast=autocast))).eval()
    prompt = torch.rand(2, 3, 16, 16)
    actions = torch.randint(0, 8, (2, model.num_frames + 3))
    with torch.no_grad():
        frames, tokens = _player_frames(model, prompt, actions, 2)
        monkeypatch.setattr(precision.CastWeights, "applied",
                            lambda self: contextlib.nullcontext())

        def separate_commit(self, cache, last_tokens, action, sampler=None, generator=None,
                            last_action=None, commit=True):
            if last_tokens is not None:
                incoming = last_tokens.new_zeros(last_tokens.shape[0], 0) \
                    if last_action is None else last_action[:, None]
                self._commit(last_tokens[:, None], incoming, cache)
            new = self._decode_frame(cache, action, sampler, generator)
            if commit:
                self._commit(new[:, None], action[:, None], cache)
            return new

        monkeypatch.setattr(DynamicsModel, "next_frame", separate_commit)
        want_frames, want_tokens = _player_frames(model, prompt, actions, 2)
    assert torch.equal(tokens, want_tokens)
    assert torch.equal(frames, want_frames)


def test_commit_in_the_next_pass_leaves_the_same_cache():
    torch.manual_seed(0)
    model = DynamicsModel(num_frames=4, image_size=8, vocab_size=16, embedding_dim=8,
                          action_vocab_size=2, dim=32, depth=2, num_heads=4, patch_size=2).eval()
    tokens = torch.randint(16, (2, 3, model.num_patches))
    actions = torch.randint(2, (2, 2))
    merged, separate = model.init_cache(2), model.init_cache(2)
    with torch.no_grad():
        model.prefill(merged, tokens[:, :1], actions[:, :0])
        model.prefill(separate, tokens[:, :2], actions[:, :1])
        masked = torch.full_like(tokens[:, 2], model.mask_token_id)
        both = model._logits(torch.stack([tokens[:, 1], masked], 1), actions, merged,
                             commit=1, first=1)[:, 0]
        alone = model._logits(masked[:, None], actions[:, 1:], separate, commit=False)[:, 0]
    assert merged.length == separate.length == 2
    for a, b in zip(merged.keys + merged.values, separate.keys + separate.values):
        torch.testing.assert_close(a[:, :, :2], b[:, :, :2])
    torch.testing.assert_close(both, alone)


def test_next_frame_with_a_pending_frame_needs_its_action():
    model = DynamicsModel(num_frames=4, image_size=8, vocab_size=16, embedding_dim=8,
                          action_vocab_size=2, dim=32, depth=1, num_heads=4, patch_size=2).eval()
    cache = model.init_cache(1)
    frame = torch.randint(16, (1, model.num_patches))
    action = torch.zeros(1, dtype=torch.long)
    new = model.next_frame(cache, frame, action, MaskGITSampler(2), commit=False)
    assert cache.length == 1  # the prompt, committed in the new frame's first pass
    with pytest.raises(ValueError, match="without last_action"):
        model.next_frame(cache, new, action)
    model.next_frame(cache, new, action, last_action=action)
    assert cache.length == 3
    with pytest.raises(ValueError, match="the cache is full"):
        model.next_frame(cache, new, action, last_action=action)
    with pytest.raises(ValueError, match="no incoming action"):
        model.next_frame(model.init_cache(1), frame, action, last_action=action)


def test_temporal_cache_keeps_the_dtype_of_its_keys():
    from distwm.blocks.st_transformer import TemporalKVCache

    cache = TemporalKVCache(1, 1, 2, 1, 4, capacity=3)
    k = torch.randn(2, 1, 1, 4, dtype=torch.bfloat16)
    keys, _ = cache.write(0, k, k)
    assert keys.dtype == torch.bfloat16 and torch.equal(keys[:, :, 0:1], k)


@needs_bf16
def test_attention_under_autocast_runs_float32_with_grad_and_bf16_without():
    q, k, v = (torch.randn(4, 2, 6, 8, requires_grad=True) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trained = precision.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
        with torch.no_grad():
            inferred = precision.scaled_dot_product_attention(q, k, v)
    assert trained.dtype == torch.float32 and inferred.dtype == torch.bfloat16
    reference = F.scaled_dot_product_attention(q.bfloat16().float(), k.bfloat16().float(),
                                               v.bfloat16().float())
    torch.testing.assert_close(trained, reference)
    trained.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    torch.testing.assert_close(inferred.float(), reference, atol=2e-2, rtol=2e-2)


def test_jepa_foreach_ema_equals_the_per_parameter_update():
    from distwm.configs.jepa_config import jepa_preset
    from distwm.models.jepa.model import IJEPA, build_networks

    torch.manual_seed(0)
    model = IJEPA(*build_networks(jepa_preset("tiny")))
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(torch.randn_like(p))
    want = [k.detach().clone().mul_(0.9).add_(q.detach(), alpha=0.1)
            for q, k in zip(model.encoder.parameters(), model.target_encoder.parameters())]
    model.update_target(0.9)
    for a, b in zip(model.target_encoder.parameters(), want):
        assert torch.equal(a, b)
