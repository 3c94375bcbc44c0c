"""bf16 autocast of the dataset-trained families (Genie, DiT, I-JEPA) through
distwm.utils.precision: the update's loss agrees with float32 to bf16 tolerance, the weights stay
float32, Genie's VQ codes under bf16 are the float32 ones (but for near-ties), and bad values or
a CPU without native bf16 raise a ValueError naming the value and the choices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distwm.configs.dit_config import DiTConfig, dit_preset
from distwm.configs.genie_config import GenieConfig, genie_preset
from distwm.configs.jepa_config import JEPAConfig, jepa_preset
from distwm.utils import precision
from hardware_marks import needs_bf16


#: relative tolerance of a loss computed with bf16 matmuls (8 mantissa bits: ~0.4% a product)
BF16_RTOL = 3e-2


def _video(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, 4, 16, 16, generator=torch.Generator().manual_seed(seed))


def _genie_update(stage: str, autocast: str) -> tuple[dict, "object"]:
    from distwm.models.genie.trainable import GenieTrainable

    torch.manual_seed(0)
    trainable = GenieTrainable(genie_preset("tiny", stage=stage, autocast=autocast))
    torch.manual_seed(5)  # the dynamics phase's masks: the same draws on both sides
    return trainable.update_video(_video()), trainable


@needs_bf16
@pytest.mark.parametrize("stage", ["tokenizer", "lam", "dynamics", "lam_dynamics"])
def test_genie_bf16_update_matches_float32(stage):
    fp32, _ = _genie_update(stage, "off")
    bf16, trainable = _genie_update(stage, "bf16")
    assert bf16["skipped"] == 0.0
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=BF16_RTOL)
    assert all(p.dtype == torch.float32 for p in trainable.model.parameters())
    # the optimizer's state is float32 too (AdamW's moments follow the parameters)
    states = [s for opt in trainable.optimizers.values() for s in opt.state.values()]
    assert states and all(v.dtype == torch.float32 for s in states for k, v in s.items()
                          if torch.is_tensor(v) and k != "step")


@needs_bf16
def test_genie_losses_are_float32_under_bf16():
    from distwm.models.genie.factory import genie_from_config

    torch.manual_seed(0)
    genie = genie_from_config(genie_preset("tiny", autocast="bf16"))
    losses = genie.phase_losses(_video(), "all")
    for name in ("loss", "tokenizer/recon_loss", "tokenizer/vq_loss", "lam/recon_loss",
                 "lam/action_variance_loss", "dynamics/loss"):
        assert losses[name].dtype == torch.float32, name


@needs_bf16
def test_genie_vq_codes_under_bf16_are_the_float32_codes():
    """Checked two ways: (1) the nearest-code search itself under autocast returns exactly the
    float32 codes of the same vectors; (2) the whole tokenizer under bf16 gives the float32 codes
    on a batch, except where the two nearest codes are a near-tie that the bf16 encoder's error
    can bridge: a mismatch a (bf16) vs b (fp32) of vector z (fp32) / z' (bf16) needs
    d(z, a) - d(z, b) <= 2 |z - z'| |a - b| (a is nearest to z'), and is counted."""
    from distwm.models.genie.factory import genie_from_config
    from distwm.vision.video_tokenizer import patchify

    torch.manual_seed(0)
    tokenizer = genie_from_config(genie_preset("tiny")).video_tokenizer
    video = _video(batch=8)

    def vectors(x):
        tokens = tokenizer.encoder_pos(tokenizer.patch_embed(patchify(x, tokenizer.patch_size)))
        return tokenizer.to_vq_embedding(tokenizer.encoder(tokens)).reshape(
            -1, tokenizer.embedding_dim).float()

    with torch.no_grad():
        z = vectors(video)
        # a codebook on the vectors' scale, so that the codes are not decided by near-ties alone
        tokenizer.vq.embedding.weight.copy_(torch.randn(tokenizer.vocab_size,
                                                        tokenizer.embedding_dim) * z.std())
        codebook = tokenizer.vq.codebook
        codes = tokenizer.vq.nearest(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(tokenizer.vq.nearest(z), codes)
            z_bf16 = vectors(video)
            _, codes_bf16, _ = tokenizer.encode(video)
        codes_fp32 = tokenizer.encode(video)[1].reshape(-1)
    codes_bf16 = codes_bf16.reshape(-1)
    assert torch.equal(codes_fp32, codes)
    differ = (codes_bf16 != codes_fp32).nonzero().flatten()
    assert len(differ) <= 0.02 * len(codes_fp32)
    for i in differ.tolist():
        a, b = codebook[codes_bf16[i]], codebook[codes_fp32[i]]
        gap = (z[i] - a).pow(2).sum() - (z[i] - b).pow(2).sum()
        assert gap <= 2 * (z[i] - z_bf16[i]).norm() * (a - b).norm() + 1e-6


@needs_bf16
def test_genie_play_under_bf16():
    from distwm.models.genie.trainable import GenieTrainable

    trainable = GenieTrainable(genie_preset("tiny", autocast="bf16"))
    frames = trainable.play_video(np.zeros((16, 16, 3), np.uint8), [0, 1, 2], maskgit_steps=2)
    assert frames.shape == (4, 16, 16, 3) and frames.dtype == np.uint8
    player_frame = trainable.model.generate(_video(1)[:, :, 0], num_frames=3)
    assert player_frame.dtype == torch.float32 and torch.isfinite(player_frame).all()


def _dit(autocast: str):
    from distwm.models.dit.trainable import DiTTrainable

    return DiTTrainable(dit_preset("tiny", num_classes=4, autocast=autocast))


@needs_bf16
def test_dit_bf16_update_and_sampling_match_float32():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=gen) * 2 - 1
    y = torch.arange(16) % 4
    results = {}
    for autocast in ("off", "bf16"):
        trainable = _dit(autocast)
        # move the zero-initialised output layers off zero, so the network's output matters
        with torch.no_grad():
            for p in trainable.model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        torch.manual_seed(0)
        metrics = [trainable.update_images(x, y) for _ in range(2)]
        out = trainable.model(x, torch.full((16,), 10), y)
        samples = trainable.sample(labels=torch.arange(4), seed=0, sample_steps=5)
        results[autocast] = (metrics, trainable, out, samples)
    (fp32, _, out32, s32), (bf16, trainable, out16, s16) = results["off"], results["bf16"]
    for a, b in zip(fp32, bf16):
        for key in ("loss", "mse", "vb"):
            assert b[key] == pytest.approx(a[key], rel=BF16_RTOL), key
    assert out16.dtype == torch.float32 and s16.dtype == torch.float32
    assert torch.allclose(out16, out32, atol=0.05)
    assert torch.isfinite(s16).all() and (s16 - s32).abs().mean() < 0.05
    assert all(p.dtype == torch.float32 for p in trainable.model.parameters())
    assert all(p.dtype == torch.float32 for p in trainable.ema.parameters())


def _jepa_step(use_bfloat16: bool):
    from distwm.models.jepa.trainable import JEPATrainable, make_mask_collator

    config = jepa_preset("tiny", use_bfloat16=use_bfloat16)
    torch.manual_seed(0)
    trainable = JEPATrainable(config, 10)
    masks = make_mask_collator(config, seed=0).sample_masks(config.batch_size)
    images = torch.randn(config.batch_size, 3, config.crop_size, config.crop_size,
                         generator=torch.Generator().manual_seed(0))
    return [trainable.train_step(images, *masks) for _ in range(2)], trainable


@needs_bf16
def test_jepa_bf16_update_matches_float32():
    fp32, _ = _jepa_step(False)
    bf16, trainable = _jepa_step(True)
    for a, b in zip(fp32, bf16):
        assert b["loss"] == pytest.approx(a["loss"], rel=BF16_RTOL)
        assert math.isfinite(b["grad_norm"]) and b["skipped"] == 0.0
    assert all(p.dtype == torch.float32 for p in trainable.learner.model.parameters())


# -- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: GenieConfig(autocast="fp16"),
                                  lambda: DiTConfig(autocast="fp16"),
                                  lambda: genie_preset("tiny").set_dotted("autocast=fp16"),
                                  lambda: dit_preset("tiny").set_dotted("autocast=fp16")])
def test_bad_autocast_names_value_and_choices(make):
    with pytest.raises(ValueError, match=r"'fp16'.*'off'.*'bf16'"):
        make()


def test_bad_autocast_in_the_networks():
    from distwm.models.dit.network import DiT
    from distwm.models.genie.factory import genie_from_config

    with pytest.raises(ValueError, match=r"'half'.*\('off', 'bf16'\)"):
        DiT(8, 4, 1, 32, 1, 2, autocast="half")
    with pytest.raises(ValueError, match=r"'half'.*\('off', 'bf16'\)"):
        genie_from_config(genie_preset("tiny"), autocast="half")


def test_jepa_use_bfloat16_must_be_a_bool():
    with pytest.raises(ValueError, match=r"'yes'.*True, False"):
        JEPAConfig(use_bfloat16="yes")
    with pytest.raises(ValueError, match="use_bfloat16"):
        jepa_preset("tiny").set_dotted("use_bfloat16=maybe")


def test_genie_use_bfloat16_and_autocast_exclude_each_other():
    with pytest.raises(ValueError, match="use_bfloat16.*autocast"):
        genie_preset("tiny", use_bfloat16=True, autocast="bf16")


def test_set_autocast_from_the_cli_override():
    from distwm.configs.runtime_config import DataParallelRunConfig

    for model, key, value, field in (("genie", "autocast", "bf16", "autocast"),
                                     ("dit", "autocast", "bf16", "autocast"),
                                     ("jepa", "use_bfloat16", "true", "use_bfloat16")):
        run = DataParallelRunConfig(model=model).apply_override(f"{key}={value}")
        assert getattr(run.build_model_config(), field) in ("bf16", True), model


def test_no_native_bf16_is_a_value_error(monkeypatch):
    from distwm.models.dit.trainable import DiTTrainable
    from distwm.models.genie.trainable import GenieTrainable
    from distwm.models.jepa.trainable import JEPATrainable

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    for build, field in ((lambda: GenieTrainable(genie_preset("tiny", autocast="bf16")),
                          "GenieConfig.autocast"),
                         (lambda: DiTTrainable(dit_preset("tiny", num_classes=4, autocast="bf16")),
                          "DiTConfig.autocast"),
                         (lambda: JEPATrainable(jepa_preset("tiny", use_bfloat16=True), 10),
                          "JEPAConfig.use_bfloat16")):
        with pytest.raises(ValueError, match=rf"{field}.*valid choices are \('off',\)"):
            build()
