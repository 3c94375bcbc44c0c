"""DIAMOND's diffusion world model: EDM maths, Karras schedule, Euler sampler, U-Net, denoiser."""

from __future__ import annotations

import math

import pytest
import torch

from distwm.blocks.diffusion import (
    EDMPreconditioner,
    EulerSampler,
    euler_sample,
    karras_sigmas,
)
from distwm.models.diamond.denoiser import DiamondDenoiser, quantize_to_uint8_levels
from distwm.models.diamond.unet import (
    AdaptiveGroupNorm,
    AttentionBlock,
    DiffusionUNet,
    DownBlock,
    ResBlock,
    TimestepEmbedding,
    UpBlock,
)

torch.set_num_threads(1)

B, L, C, H, W, A = 2, 4, 3, 16, 16, 5


def tiny_unet(**kwargs) -> DiffusionUNet:
    args = {"obs_channels": C, "num_conditioning_frames": L, "base_channels": 16, "channel_multipliers": (1, 1),
            "num_res_blocks": 1, "cond_dim": 32, "action_dim": A}
    args.update(kwargs)
    return DiffusionUNet(**args)


def randomise_zero_inits(module: torch.nn.Module) -> None:
    """The reference zero-initialises last convolutions, so a fresh net ignores its inputs."""
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.1)


def history(batch: int = B, h: int = H, w: int = W):
    obs = torch.rand(batch, L, C, h, w) * 2 - 1
    act = torch.randint(0, A, (batch, L))
    return obs, act


# ----- EDM preconditioning -----------------------------------------------------------------


def test_preconditioners_match_edm_formulas():
    sd = 0.5
    sigma = torch.tensor([0.002, 0.1, 0.5, 1.0, 5.0, 80.0])
    cs = EDMPreconditioner(sigma_data=sd).get_preconditioners(sigma)
    total = sigma ** 2 + sd ** 2
    torch.testing.assert_close(cs["c_skip"], sd ** 2 / total)
    torch.testing.assert_close(cs["c_out"], sigma * sd / total.sqrt())
    torch.testing.assert_close(cs["c_in"], 1 / total.sqrt())
    torch.testing.assert_close(cs["c_noise"], sigma.log() / 4)
    assert all(v.shape == sigma.shape for v in cs.values())


def test_offset_noise_preconditioners_use_combined_sigma():
    sigma = torch.tensor([0.01, 1.0, 4.0])
    with_offset = EDMPreconditioner(sigma_offset_noise=0.3).get_preconditioners(sigma)
    plain = EDMPreconditioner().get_preconditioners((sigma ** 2 + 0.09).sqrt())
    for key in plain:
        torch.testing.assert_close(with_offset[key], plain[key])


def test_denoiser_returns_its_input_at_tiny_sigma():
    precond = EDMPreconditioner()
    x = torch.randn(B, C, 8, 8)
    cs = precond.get_preconditioners(torch.tensor([1e-6]))
    assert cs["c_skip"].item() == pytest.approx(1.0, abs=1e-9)

    def wild_model(scaled_x, c_noise):
        return torch.randn_like(scaled_x) * 10

    torch.testing.assert_close(precond.denoise(wild_model, x, 1e-6), x, atol=1e-4, rtol=0)
    far = precond.denoise(wild_model, x, 10.0)
    assert (far - x).abs().max() > 1.0


def test_training_loss_is_mse_to_scaled_target_and_edm_weighted():
    precond = EDMPreconditioner(sigma_offset_noise=0.3)
    clean = torch.rand(B, C, 8, 8) * 2 - 1
    sigma = torch.tensor([0.3, 2.0])

    def model(scaled_x, c_noise):
        return scaled_x * 0.7 + c_noise[:, None, None, None]

    loss = precond.training_loss(model, clean, sigma=sigma, generator=torch.Generator().manual_seed(3))
    noisy = precond.add_noise(clean, sigma, generator=torch.Generator().manual_seed(3))
    out = precond.model_output(model, noisy, sigma)
    target = precond.training_target(clean, noisy, sigma)
    torch.testing.assert_close(loss, ((out - target) ** 2).mean())
    # Equivalent EDM form: |D - clean|^2 / c_out^2.
    c_out = precond.get_preconditioners(sigma)["c_out"][:, None, None, None]
    weighted = ((precond.denoise(model, noisy, sigma) - clean) ** 2 / c_out ** 2).mean()
    torch.testing.assert_close(loss, weighted)


def test_training_sigmas_are_clipped_log_normal():
    precond = EDMPreconditioner()
    sigma = precond.sample_noise_level(200_000, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert sigma.min() >= 2e-3 and sigma.max() <= 20.0
    assert sigma.log().mean().item() == pytest.approx(-0.4, abs=0.02)
    assert sigma.log().std().item() == pytest.approx(1.2, abs=0.03)


def test_offset_noise_is_shared_across_pixels_of_a_channel():
    precond = EDMPreconditioner(sigma_offset_noise=0.3)
    x = torch.zeros(4000, 2, 4, 4)
    offset = precond.add_noise(x, 0.0)
    assert torch.equal(offset, offset[:, :, :1, :1].expand_as(offset))
    assert offset[:, :, 0, 0].std().item() == pytest.approx(0.3, rel=0.05)
    assert torch.equal(precond.add_noise(x, 0.0, offset_noise=0.0), x)


# ----- Karras schedule and Euler sampler ---------------------------------------------------


def test_karras_sigmas_endpoints_and_monotonicity():
    sigmas = karras_sigmas(10, sigma_min=2e-3, sigma_max=5.0, rho=7)
    assert sigmas.shape == (11,)
    assert sigmas[0].item() == pytest.approx(5.0)
    assert sigmas[-2].item() == pytest.approx(2e-3)
    assert sigmas[-1].item() == 0.0
    assert (sigmas[1:] < sigmas[:-1]).all()
    torch.testing.assert_close(karras_sigmas(1, 0.1, 3.0), torch.tensor([3.0, 0.0]))
    # rho = 1 is a linear ramp; rho = 7 puts more steps at low noise.
    torch.testing.assert_close(karras_sigmas(5, 1.0, 5.0, rho=1)[:-1], torch.linspace(5.0, 1.0, 5))
    assert karras_sigmas(5, 1.0, 5.0, rho=7)[2] < 3.0


def test_euler_sampler_reaches_the_fixed_clean_frame_of_an_exact_denoiser():
    x0 = torch.rand(B, C, 8, 8) * 1.6 - 0.8
    precond = EDMPreconditioner()

    def exact_model(scaled_x, c_noise):
        """The ``F`` whose denoised estimate is always ``x0``."""
        sigma = (4 * c_noise).exp()
        cs = precond.get_preconditioners(sigma)
        x = scaled_x / cs["c_in"][:, None, None, None]
        return (x0 - cs["c_skip"][:, None, None, None] * x) / cs["c_out"][:, None, None, None]

    sampler = EulerSampler(sigma_max=5.0, num_steps=3, edm_precond=precond)
    out = sampler.sample(exact_model, x0.shape, torch.device("cpu"))
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)


def test_euler_ode_maps_noise_to_a_gaussian_data_distribution():
    data_std = 0.4

    def exact_gaussian_denoiser(x, sigma):  # E[x0 | x] for x0 ~ N(0, data_std^2)
        return x * data_std ** 2 / (data_std ** 2 + sigma[:, None] ** 2)

    sampler = EulerSampler(sigma_max=80.0, num_steps=400, clip_range=None)
    noise = sampler.initial_noise((20_000, 1), torch.device("cpu"), torch.Generator().manual_seed(0))
    assert noise.std().item() == pytest.approx(80.0, rel=0.03)
    out = sampler.sample_with_denoiser(exact_gaussian_denoiser, noise)
    assert out.std().item() == pytest.approx(data_std, rel=0.05)
    # Unit start noise (the reference DIAMOND sampler) under-disperses this sampler.
    unit = EulerSampler(sigma_max=80.0, num_steps=400, clip_range=None, initial_noise_scale=1.0)
    assert unit.initial_noise((20_000, 1), torch.device("cpu")).std().item() == pytest.approx(1.0, rel=0.03)


def test_euler_sample_clamps_denoised_estimates():
    sigmas = karras_sigmas(3, 2e-3, 5.0)
    out = euler_sample(lambda x, s: torch.full_like(x, 3.0), torch.zeros(2, 4), sigmas, clip_denoised=(-1, 1))
    torch.testing.assert_close(out, torch.ones(2, 4))


# ----- U-Net blocks ------------------------------------------------------------------------


def test_block_shapes():
    cond = torch.randn(B, 32)
    x = torch.randn(B, 16, 8, 8)
    assert AdaptiveGroupNorm(4, 16, 32)(x, cond).shape == x.shape
    assert ResBlock(16, 24, 32)(x, cond).shape == (B, 24, 8, 8)
    assert AttentionBlock(16, 32)(x, cond).shape == x.shape
    emb = TimestepEmbedding(64)(torch.randn(B))
    assert emb.shape == (B, 64)
    down = DownBlock(16, 24, 32, num_res_blocks=2)
    y, skips = down.forward_with_skips(x, cond)
    assert y.shape == (B, 24, 4, 4) and torch.equal(down(x, cond), y)
    assert [s.shape[1] for s in skips] == [16, 24, 24]
    up = UpBlock(24, 16, 32, num_res_blocks=2, upsample=False)
    assert up(y, cond, [s[..., :4, :4] for s in skips]).shape == (B, 16, 4, 4)


def test_adaptive_group_norm_scales_and_shifts_from_the_condition():
    norm = AdaptiveGroupNorm(2, 4, 3)
    with torch.no_grad():
        norm.linear.weight.zero_()
        norm.linear.bias.copy_(torch.tensor([1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]))
    x = torch.randn(B, 4, 5, 5) * 3 + 7
    y = norm(x, torch.randn(B, 3))
    expected = torch.nn.functional.group_norm(x, 2, eps=1e-5) * 2 + 0.5
    torch.testing.assert_close(y, expected)


def test_attention_residual_adds_to_the_normalised_input_like_the_reference():
    block = AttentionBlock(16, 32)
    x = torch.randn(B, 16, 6, 6) * 4 + 2
    expected = torch.nn.functional.group_norm(x, 1, eps=1e-5)  # zero-initialised output projection
    torch.testing.assert_close(block(x, None), expected)
    randomise_zero_inits(block)
    assert (block(x, None) - expected).abs().max() > 1e-3


def test_timestep_embedding_is_fixed_fourier_features():
    emb = TimestepEmbedding(32, freq_dim=32)
    assert "weight" in emb.state_dict() and not list(emb.parameters())
    out = emb(torch.tensor([0.0, 0.3]))
    torch.testing.assert_close(out[:, :16] ** 2 + out[:, 16:] ** 2, torch.ones(2, 16))
    torch.testing.assert_close(out[0], torch.cat([torch.ones(16), torch.zeros(16)]))
    assert TimestepEmbedding(20, freq_dim=32)(torch.zeros(3)).shape == (3, 20)


def test_unet_output_shape_including_odd_sizes_and_one_hot_actions():
    unet = tiny_unet(channel_multipliers=(1, 2, 2))
    for h, w in ((16, 16), (13, 10)):
        obs, act = history(h=h, w=w)
        out = unet(torch.randn(B, C, h, w), torch.randn(B), obs, act)
        assert out.shape == (B, C, h, w)
    randomise_zero_inits(unet)
    obs, act = history()
    x, t = torch.randn(B, C, H, W), torch.randn(B)
    one_hot = torch.nn.functional.one_hot(act, A).float()
    torch.testing.assert_close(unet(x, t, obs, one_hot), unet(x, t, obs, act))


def test_fresh_unet_ignores_inputs_like_the_reference_zero_init():
    unet = tiny_unet()
    obs, act = history()
    a = unet(torch.randn(B, C, H, W), torch.randn(B), obs, act)
    b = unet(torch.randn(B, C, H, W), torch.randn(B), -obs, (act + 1) % A)
    torch.testing.assert_close(a, b)


def test_actions_conditioning_frames_and_noise_level_change_the_output():
    torch.manual_seed(0)
    unet = tiny_unet()
    randomise_zero_inits(unet)
    obs, act = history()
    x, t = torch.randn(B, C, H, W), torch.randn(B)
    base = unet(x, t, obs, act)
    changed_act = act.clone()
    changed_act[:, -1] = (act[:, -1] + 1) % A
    assert (unet(x, t, obs, changed_act) - base).abs().max() > 1e-3
    older_frame = obs.clone()
    older_frame[:, 0] = -older_frame[:, 0]
    assert (unet(x, t, older_frame, act) - base).abs().max() > 1e-3
    assert (unet(x, t + 1.0, obs, act) - base).abs().max() > 1e-3
    assert (unet(x + 0.5, t, obs, act) - base).abs().max() > 1e-3


def test_unet_parameter_count_matches_the_reference_atari_model():
    unet = DiffusionUNet()  # the reference Atari InnerModel: 4,406,851 parameters with 18 actions
    assert sum(p.numel() for p in unet.parameters()) == 4_406_851
    assert unet.channels == [64, 64, 64, 64]


# ----- DiamondDenoiser ---------------------------------------------------------------------


def test_denoiser_sample_is_a_quantised_frame_in_range():
    torch.manual_seed(0)
    model = DiamondDenoiser(tiny_unet())
    randomise_zero_inits(model.unet)
    obs, act = history()
    frame = model.sample(obs, act)
    assert frame.shape == (B, C, H, W)
    assert frame.min() >= -1 and frame.max() <= 1
    levels = (frame + 1) / 2 * 255
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)
    assert model.sample(obs, act, num_steps=1).shape == (B, C, H, W)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    torch.testing.assert_close(model.sample(obs, act, generator=g1), model.sample(obs, act, generator=g2))
    assert model.sampler.sigma_max == 5.0 and model.sampler.num_steps == 3
    assert model.preconditioner.sigma_offset_noise == 0.3


def test_quantisation_truncates_to_8_bit_levels():
    frames = torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0])
    levels = (frames.clamp(-1, 1) + 1) / 2 * 255
    torch.testing.assert_close(quantize_to_uint8_levels(frames), levels.floor() / 255 * 2 - 1)


def test_loss_decreases_when_overfitting_a_tiny_batch():
    torch.manual_seed(0)
    model = DiamondDenoiser(tiny_unet())
    obs, act = history(h=8, w=8)
    next_frame = obs[:, -1].flip(-1)

    def evaluate() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return sum(model.loss(next_frame, obs, act).item() for _ in range(8)) / 8

    before = evaluate()
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        optim.zero_grad()
        model.loss(next_frame, obs, act).backward()
        optim.step()
    after = evaluate()
    assert after < 0.7 * before, (before, after)


def test_conditioning_frame_noise_augmentation_reaches_the_unet(monkeypatch):
    unet = tiny_unet(embed_history_noise=True)
    model = DiamondDenoiser(unet, noise_conditioning_frames=True, sampling_conditioning_sigma=0.005)
    calls = []
    original = unet.forward

    def spy(x, t, obs_history, actions, history_noise=None):
        calls.append((obs_history, history_noise))
        return original(x, t, obs_history, actions, history_noise)

    monkeypatch.setattr(unet, "forward", spy)
    obs, act = history()
    model.loss(obs[:, -1], obs, act)
    noised, history_noise = calls[-1]
    assert not torch.allclose(noised, obs) and history_noise.shape == (B,)
    assert ((4 * history_noise).exp() >= 2e-3).all()
    model.sample(obs, act)
    noised, history_noise = calls[-1]
    torch.testing.assert_close(history_noise, torch.full((B,), math.log(0.005) / 4))
    assert (noised - obs).abs().max() < 0.05
    plain = DiamondDenoiser(tiny_unet())
    assert not plain.noise_conditioning_frames and plain.unet.history_noise_embedding is None


def test_seed_sampler_path_runs_on_the_unet():
    unet = tiny_unet()
    randomise_zero_inits(unet)
    obs, act = history()
    sampler = EulerSampler(sigma_max=5.0, edm_precond=EDMPreconditioner())
    out = sampler.sample(unet, (B, C, H, W), torch.device("cpu"), obs_history=obs, actions=act)
    assert out.shape == (B, C, H, W) and out.abs().max() <= 1


def test_seed_module_reexports_the_seed_names():
    import distwm.models.diffusion.diamond_diffusion as seed

    assert set(seed.__all__) == {"AdaptiveGroupNorm", "ResBlock", "AttentionBlock", "TimestepEmbedding",
                                 "DownBlock", "UpBlock", "DiffusionUNet", "EDMPreconditioner", "EulerSampler"}
    assert seed.DiffusionUNet is DiffusionUNet and seed.EulerSampler is EulerSampler


# ----- bad arguments -----------------------------------------------------------------------


@pytest.mark.parametrize("build, match", [
    (lambda: karras_sigmas(0), r"num_steps must be an integer >= 1, got 0"),
    (lambda: karras_sigmas(3, sigma_min=5.0, sigma_max=1.0), r"sigma_min < sigma_max.*5\.0.*1\.0"),
    (lambda: karras_sigmas(3, rho=-1), r"rho must be .*> 0, got -1"),
    (lambda: EulerSampler(num_steps=0), r"num_steps must be an integer >= 1, got 0"),
    (lambda: EulerSampler(edm_precond="edm"), r"EDMPreconditioner or None, got str"),
    (lambda: EulerSampler(clip_range=(1, -1)), r"low < high or None, got \(1, -1\)"),
    (lambda: EDMPreconditioner(sigma_data=0), r"sigma_data must be .*> 0, got 0"),
    (lambda: EDMPreconditioner(sigma_offset_noise=-0.1), r"sigma_offset_noise must be .*>= 0, got -0\.1"),
    (lambda: AdaptiveGroupNorm(3, 16, 8), r"num_channels \(16\) must be a multiple of num_groups \(3\)"),
    (lambda: ResBlock(8, 8, 8, dropout=1.5), r"dropout must be in \[0, 1\), got 1\.5"),
    (lambda: TimestepEmbedding(8, freq_dim=7), r"freq_dim must be an even integer >= 2, got 7"),
    (lambda: tiny_unet(cond_dim=30), r"cond_dim \(30\) must be even and a multiple of num_conditioning_frames \(4\)"),
    (lambda: tiny_unet(attention_levels=(True,)), r"one flag per level \(2\), got \(True,\)"),
    (lambda: tiny_unet(channel_multipliers=()), r"channel_multipliers .* got \(\)"),
    (lambda: tiny_unet(action_dim=0), r"action_dim must be an integer >= 1, got 0"),
    (lambda: DiamondDenoiser(tiny_unet(), noise_conditioning_frames=True), r"embed_history_noise=True"),
    (lambda: DiamondDenoiser("unet"), r"must be a DiffusionUNet, got str"),
])
def test_bad_arguments_raise_value_error(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_inputs_raise_value_error():
    unet = tiny_unet()
    obs, act = history()
    x, t = torch.randn(B, C, H, W), torch.randn(B)
    with pytest.raises(ValueError, match=r"obs_history must have shape \(2, 4, 3, 16, 16\).*got \(2, 3, 3, 16, 16\)"):
        unet(x, t, obs[:, 1:], act)
    with pytest.raises(ValueError, match=r"actions must be \(B, 4\) indices .*got \(2, 3\)"):
        unet(x, t, obs, act[:, 1:])
    with pytest.raises(ValueError, match=r"x must have 3 channels .*got shape \(2, 1, 16, 16\)"):
        unet(x[:, :1], t, obs, act)
    with pytest.raises(ValueError, match=r"embed_history_noise=False"):
        unet(x, t, obs, act, history_noise=torch.zeros(B))
    with pytest.raises(ValueError, match=r"expected 2 skips .* got 1"):
        UpBlock(16, 16, 32, num_res_blocks=1)(x.new_zeros(B, 16, 4, 4), torch.zeros(B, 32), [x.new_zeros(B, 16, 8, 8)])
    model = DiamondDenoiser(unet)
    with pytest.raises(ValueError, match=r"num_steps must be an integer >= 1, got 0"):
        model.sample(obs, act, num_steps=0)
    with pytest.raises(ValueError, match=r"act_history must be \(B, 4\).*got \(2, 2\)"):
        model.loss(obs[:, -1], obs, act[:, :2])
