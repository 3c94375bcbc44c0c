"""Genie as a whole (:mod:`distwm.models.genie`): the registry entries, the training phases of
the Trainable (which parts move, the stop-gradient into the LAM), generation and play on
caches, checkpoints and the report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import distwm
from distwm.configs.genie_config import GenieConfig, GenieSmallConfig, genie_preset
from distwm.models.genie import Genie, GeniePlayer, GenieTrainable
from distwm.models.genie.report import psnr


def clips(seed: int = 0, batch: int = 2, size: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (batch, 4, 3, size, size), dtype=np.uint8)}


def params(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


@pytest.fixture(scope="module")
def trained() -> GenieTrainable:
    torch.manual_seed(0)
    trainable = GenieTrainable(genie_preset("tiny", tokenizer_updates=3))
    for i in range(5):
        trainable.update({"clips": clips(i)})
    return trainable


def test_registry_builds_genie_from_names_and_configs():
    assert isinstance(distwm.create_config("genie"), GenieConfig)
    small = distwm.create_model("genie-small", image_size=32)
    assert isinstance(small, Genie) and small.image_size == 32 and small.num_frames == 16
    assert distwm.get_model_spec("genie_small").name == "genie-small"
    assert distwm.get_model_spec("genie_base").name == "genie"
    assert distwm.get_model_spec("genie").kind == "dataset-trained"
    cfg = GenieSmallConfig(image_size=32, action_encoder_depth=1, dynamics_depth=1)
    model = distwm.create_model("genie", config=cfg)
    assert len(model.latent_action_model.encoder.blocks) == 1
    assert len(model.dynamics_model.transformer.blocks) == 1


@pytest.mark.parametrize("stage,moving", [
    ("tokenizer", {"video_tokenizer"}),
    ("lam", {"latent_action_model"}),
    ("dynamics", {"dynamics_model"}),
    ("lam_dynamics", {"latent_action_model", "dynamics_model"}),
])
def test_each_stage_moves_only_its_parts(stage, moving):
    trainable = GenieTrainable(genie_preset("tiny", stage=stage))
    before = {p: params(getattr(trainable.model, p)) for p in
              ("video_tokenizer", "latent_action_model", "dynamics_model")}
    metrics = trainable.update({"clips": clips()})
    assert metrics["skipped"] == 0.0 and metrics[f"phase/{stage}"] == 1.0
    for part, value in before.items():
        changed = not torch.equal(value, params(getattr(trainable.model, part)))
        assert changed == (part in moving), (stage, part)


def test_stage_all_trains_the_tokenizer_first(trained):
    assert [trained.phase(k) for k in range(5)] == ["tokenizer"] * 3 + ["lam_dynamics"] * 2
    assert trained.part_updates == {"video_tokenizer": 3, "latent_action_model": 2,
                                    "dynamics_model": 2}


def test_dynamics_loss_sends_no_gradient_into_the_lam():
    torch.manual_seed(0)
    model = Genie(**_tiny_kwargs())
    video = torch.rand(2, 3, 4, 16, 16)
    lam = model.latent_action_model
    torch.manual_seed(1)
    model.phase_losses(video, "lam")["loss"].backward()
    alone = [p.grad.clone() for p in lam.parameters()]
    model.zero_grad()
    torch.manual_seed(1)
    model.phase_losses(video, "lam_dynamics")["loss"].backward()
    for a, b in zip(alone, (p.grad for p in lam.parameters())):
        torch.testing.assert_close(a, b)
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.dynamics_model.parameters())
    assert all(p.grad is None for p in model.video_tokenizer.parameters())


def test_phase_all_encodes_once_and_feeds_the_dynamics_the_tokenizers_tokens():
    torch.manual_seed(0)
    model = Genie(**_tiny_kwargs())
    video = torch.rand(2, 3, 4, 16, 16)
    encoder_calls = []
    hook = model.video_tokenizer.encoder.register_forward_pre_hook(
        lambda module, args: encoder_calls.append(1))
    try:
        torch.manual_seed(1)
        losses = model.phase_losses(video, "all")
    finally:
        hook.remove()
    assert len(encoder_calls) == 1
    # the reference: the dynamics loss on encode_video's tokens and the LAM's actions
    tokens = model.encode_video(video)
    actions = model.latent_action_model.clip_loss(video)["latent_actions"]
    torch.manual_seed(1)  # the tokenizer and the LAM draw nothing: the same masks follow
    want = model.dynamics_model.loss(tokens, actions, (0.5, 1.0))
    torch.testing.assert_close(losses["dynamics/loss"], want["loss"])


def _tiny_kwargs():
    from distwm.models.genie.factory import genie_kwargs

    return genie_kwargs(genie_preset("tiny"))


def test_generate_and_player_agree_and_run_past_the_context():
    torch.manual_seed(0)
    model = Genie(**_tiny_kwargs()).eval()
    prompt = torch.rand(2, 3, 16, 16)
    actions = torch.randint(0, 8, (2, 9))
    video = model.generate(prompt, num_frames=10, actions=actions,
                           generator=torch.Generator().manual_seed(3))
    assert video.shape == (2, 3, 10, 16, 16) and 0 <= video.min() and video.max() <= 1
    torch.testing.assert_close(video[:, :, 0], prompt)
    player = GeniePlayer(model, prompt, generator=torch.Generator().manual_seed(3))
    frames = [player.step(actions[:, t]) for t in range(9)]
    torch.testing.assert_close(torch.stack(frames, 2), video[:, :, 1:])
    assert player.dynamics_cache.length <= model.num_frames
    one_pass = model.generate(prompt, num_frames=3, actions=actions[:, :2], use_maskgit=False)
    assert one_pass.shape == (2, 3, 3, 16, 16)
    assert model.play(prompt, actions[:, 0]).shape == (2, 3, 16, 16)
    assert model.play(prompt, actions[:, 0], torch.rand(2, 3, 6, 16, 16)).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"actions must be \(B, num_frames - 1\)"):
        model.generate(prompt, num_frames=4, actions=actions)


def test_checkpoint_round_trip_and_architecture_check(trained):
    state = trained.state_dict()
    copy = GenieTrainable.from_state(state)
    assert copy.updates == 5 and copy.part_updates == trained.part_updates
    torch.testing.assert_close(params(copy.model), params(trained.model))
    # the next update of both is the same
    torch.manual_seed(7)
    a = trained.update({"clips": clips(9)})
    torch.manual_seed(7)
    b = copy.update({"clips": clips(9)})
    assert a["loss"] == pytest.approx(b["loss"])
    other = GenieTrainable(genie_preset("tiny", dynamics_dim=64))
    with pytest.raises(ValueError, match="dynamics_dim"):
        other.load_state_dict(state)


def test_report_has_the_papers_metrics_and_media(trained):
    report = trained.report(clips(1))
    scalars = report["scalars"]
    assert set(scalars) >= {"psnr/reconstruction", "psnr/generation_t", "psnr/random_actions_t",
                            "psnr/delta_t"}
    assert scalars["psnr/delta_t"] == pytest.approx(
        scalars["psnr/generation_t"] - scalars["psnr/random_actions_t"])
    assert report["images"]["reconstruction"].shape == (32, 64, 3)
    assert report["videos"]["latent_actions"].dtype == np.uint8
    assert report["videos"]["latent_actions"].shape[0] == 4


def test_psnr_matches_its_formula():
    x, y = torch.rand(3, 2, 5), torch.rand(3, 2, 5)
    mse = ((x - y) ** 2).reshape(3, -1).mean(1)
    torch.testing.assert_close(psnr(x, y), 10 * torch.log10(1 / mse))
    assert psnr(x, x)[0] == pytest.approx(100.0)  # capped by the 1e-10 floor


def test_bad_batches_and_frames_of_another_size():
    trainable = GenieTrainable(genie_preset("tiny", stage="tokenizer"))
    with pytest.raises(ValueError, match="no 'image'"):
        trainable.update({"clips": {"state": np.zeros((2, 4, 3))}})
    with pytest.raises(ValueError, match=r"image \(B, T, 3, H, W\)"):
        trainable.update({"clips": {"image": np.zeros((2, 4, 1, 16, 16), np.uint8)}})
    with pytest.raises(ValueError, match="sample 'clips'"):
        trainable.update({"frames": clips()})
    assert trainable.update({"clips": clips(size=32)})["skipped"] == 0.0  # resized to 16
    with pytest.raises(ValueError, match="channels"):
        GenieTrainable.from_config(genie_preset("tiny"), {"frame_shape": [1, 16, 16]})
    with pytest.raises(ValueError, match="unknown Genie training phase 'x'"):
        trainable.model.phase_losses(torch.rand(1, 3, 4, 16, 16), "x")
