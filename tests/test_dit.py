"""DiT: the adaLN-Zero network, DDPM with learned sigma (posterior, VLB, hybrid loss),
respaced / DDIM / guided sampling, the evaluation, the trainable and its config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import require_module
from distwm.configs.dit_config import DIT_PRESETS, DiTConfig, dit_preset, get_dit_config
from distwm.models.dit.diffusion import (DDPM, discretized_gaussian_log_likelihood, mean_flat,
                                         normal_kl)
from distwm.models.dit.evaluation import (SampleClassifier, classifier_accuracy,
                                          frechet_distance, image_grid)
from distwm.models.dit.network import (DiT, PatchEmbed, PatchUnEmbed, get_2d_sincos_pos_embed,
                                       sinusoidal_time_embedding)
from distwm.models.dit.sampling import ddim_step, respace, sample_images, space_timesteps
from distwm.models.dit.trainable import DiTTrainable

TOY_INFO = {"kind": "images", "frame_shape": [1, 8, 8], "num_classes": 2}


def tiny_dit(**kwargs) -> DiT:
    args = dict(num_classes=2, learn_sigma=True, t_dim=16)
    args.update(kwargs)
    return DiT(8, 4, 1, 32, 2, 2, **args)


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter random (the zero-initialised layers too), so outputs depend on inputs."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


def toy_batch(rng: np.random.Generator, n: int = 32) -> dict:
    """8x8 grey images: class 0 dark (35), class 1 bright (220), with pixel noise."""
    y = rng.integers(0, 2, n)
    base = np.where(y[:, None, None, None] == 1, 220.0, 35.0)
    image = np.clip(base + rng.normal(0, 15, (n, 1, 8, 8)), 0, 255).astype(np.uint8)
    return {"image": image, "label": y.astype(np.int64)}


# -- the network ----------------------------------------------------------------------------

def test_adaln_zero_blocks_are_identities_and_the_output_is_zero_at_init():
    model = tiny_dit()
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 50, 99]), torch.tensor([0, 1, 1])
    out = model(x, t, y)
    assert out.shape == (3, 2, 8, 8)  # learned sigma: noise and variance channels
    assert torch.count_nonzero(out) == 0
    tokens, c = model.patchify(x), model.condition(t, y)
    for block in model.blocks:
        assert torch.equal(block(tokens, c), tokens)
    # the identity comes from the zero modulation: perturbed, the block changes its input
    torch.nn.init.normal_(model.blocks[0].adaLN_modulation[-1].weight)
    assert not torch.allclose(model.blocks[0](tokens, c), tokens)


def test_the_seed_constructor_is_an_unconditional_noise_predictor_and_train_is_both():
    model = DiT(8, 4, 3, 32, 1, 2)  # the seed's signature
    x = torch.randn(2, 3, 8, 8)
    assert model(x, torch.tensor([1, 2])).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="unconditional"):
        model(x, torch.tensor([1, 2]), torch.tensor([0, 1]))
    assert model.eval() is model and not model.training
    assert model.train() is model and model.training
    assert DiT.train.__name__ == "train_dit"  # on the class: the seed's training entry point


def test_time_and_position_embeddings_follow_the_formulas():
    t = torch.tensor([0.0, 3.0, 999.0])
    emb = sinusoidal_time_embedding(t, 8)
    freqs = 10000.0 ** (-np.arange(4) / 4)
    expected = np.concatenate([np.sin(t.numpy()[:, None] * freqs), np.cos(t.numpy()[:, None] * freqs)], 1)
    np.testing.assert_allclose(emb.numpy(), expected, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_time_embedding(t, 7)
    pos = get_2d_sincos_pos_embed(8, 3).numpy()  # MAE: [column embedding, row embedding]
    row, col = divmod(5, 3)
    omega = 1.0 / 10000 ** (np.arange(2) / 2)
    np.testing.assert_allclose(pos[5], np.concatenate([np.sin(col * omega), np.cos(col * omega),
                                                       np.sin(row * omega), np.cos(row * omega)]),
                               atol=1e-6)
    embed = PatchEmbed(8, 4, 3, 16)
    assert embed(torch.randn(2, 3, 8, 8)).shape == (2, 4, 16)
    assert "pos_embed" not in embed.state_dict()  # fixed: a function of the shapes
    unembed = PatchUnEmbed(8, 4, 16, 6)
    assert unembed(torch.randn(2, 4, 16)).shape == (2, 6, 8, 8)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        PatchEmbed(10, 4, 3, 16)


def test_unpatchify_puts_each_token_at_its_patch():
    unembed = PatchUnEmbed(8, 4, 4, 1)
    with torch.no_grad():
        unembed.proj.weight.zero_()
        unembed.proj.bias.zero_()
        unembed.proj.weight[:, 0] = 1.0  # every output pixel = the token's first feature
    tokens = torch.zeros(1, 4, 4)
    tokens[0, :, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])  # row-major over the 2x2 patch grid
    image = unembed(tokens)[0, 0]
    assert image[0, 0] == 1 and image[0, 7] == 2 and image[7, 0] == 3 and image[7, 7] == 4


def test_guidance_scale_one_is_the_conditional_output_and_zero_the_unconditional():
    model = randomize(tiny_dit())
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor([5, 10, 20, 40]), torch.tensor([0, 1, 0, 1])
    cond, uncond = model(x, t, y), model(x, t)  # y=None: the null class
    assert not torch.allclose(cond, uncond)
    torch.testing.assert_close(model.forward_with_cfg(x, t, y, 1.0), cond, atol=1e-5, rtol=1e-5)
    guided0 = model.forward_with_cfg(x, t, y, 0.0)
    torch.testing.assert_close(guided0[:, :1], uncond[:, :1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(guided0[:, 1:], cond[:, 1:], atol=1e-5, rtol=1e-5)  # variance: cond
    guided3 = model.forward_with_cfg(x, t, y, 3.0)
    torch.testing.assert_close(guided3[:, :1], uncond[:, :1] + 3 * (cond[:, :1] - uncond[:, :1]),
                               atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="class-conditional"):
        DiT(8, 4, 1, 32, 1, 2).forward_with_cfg(x, t, y, 2.0)
    with pytest.raises(ValueError, match="null class"):
        tiny_dit(class_dropout_prob=0.0)(x, t)


# -- the diffusion --------------------------------------------------------------------------

def test_q_sample_and_the_posterior_match_the_closed_forms():
    ddpm = DDPM(50, 1e-3, 0.05)
    betas = np.linspace(1e-3, 0.05, 50)
    abar = np.cumprod(1 - betas)
    x0, noise = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    t = torch.tensor([0, 17, 49])
    xt = ddpm.q_sample(x0, t, noise)
    a = torch.tensor(abar[t.numpy()], dtype=torch.float32).view(-1, 1, 1, 1)
    torch.testing.assert_close(xt, a.sqrt() * x0 + (1 - a).sqrt() * noise)
    # q(x_{t-1} | x_t, x_0) by Bayes: a product of N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}) and
    # N(x_t; sqrt(alpha_t) x_{t-1}, beta_t)
    t = torch.tensor([3, 17, 49])
    xt = ddpm.q_sample(x0, t, noise)
    mean, var, log_var = ddpm.q_posterior_mean_variance(x0, xt, t)
    tn = t.numpy()
    ab_prev, alpha, beta = abar[tn - 1], 1 - betas[tn], betas[tn]
    precision = 1 / (1 - ab_prev) + alpha / beta
    shape = (-1, 1, 1, 1)
    exp_var = torch.tensor(1 / precision, dtype=torch.float32).view(shape)
    exp_mean = exp_var * (torch.tensor(np.sqrt(ab_prev) / (1 - ab_prev), dtype=torch.float32).view(shape) * x0
                          + torch.tensor(np.sqrt(alpha) / beta, dtype=torch.float32).view(shape) * xt)
    torch.testing.assert_close(var, exp_var)
    torch.testing.assert_close(log_var, exp_var.log())
    torch.testing.assert_close(mean, exp_mean, atol=1e-5, rtol=1e-4)
    # t = 0: the posterior variance is 0 and its log is clipped to that of t = 1
    _, var0, log_var0 = ddpm.q_posterior_mean_variance(x0, xt, torch.zeros(3, dtype=torch.long))
    assert float(var0.max()) == 0.0
    assert math.isclose(float(log_var0[0]), math.log(betas[1] * (1 - abar[0]) / (1 - abar[1])), rel_tol=1e-5)


def test_learned_sigma_interpolates_between_the_posterior_and_beta():
    ddpm = DDPM(100, 1e-4, 0.02)
    x, t = torch.randn(2, 1, 4, 4), torch.tensor([10, 60])
    for v, expected in ((1.0, ddpm.log_betas[t]), (-1.0, ddpm.posterior_log_variance_clipped[t])):
        out = torch.cat([torch.zeros_like(x), torch.full_like(x, v)], 1)
        got = ddpm.p_mean_variance(out, x, t)["log_variance"]
        torch.testing.assert_close(got, expected.view(-1, 1, 1, 1).expand_as(x))
    with pytest.raises(ValueError, match="expected 1 .noise. or 2"):
        ddpm.p_mean_variance(torch.zeros(2, 3, 4, 4), x, t)


def test_the_vlb_terms_at_known_values():
    zero, one = torch.zeros(3), torch.ones(3)
    torch.testing.assert_close(normal_kl(zero, zero, zero, zero), zero)
    torch.testing.assert_close(normal_kl(zero, zero, one, zero), 0.5 * one)  # (mu1 - mu2)^2 / 2
    torch.testing.assert_close(normal_kl(zero, math.log(4) * one, zero, zero),
                               0.5 * (-1 - math.log(4) + 4) * one)
    # the discretized likelihood: a middle bin is the Gaussian mass of [x - 1/255, x + 1/255]
    x, mu, sigma = torch.tensor([0.2]), torch.tensor([0.25]), torch.tensor([0.1])
    logp = discretized_gaussian_log_likelihood(x, mu, sigma.log())
    exact = torch.special.ndtr((x + 1 / 255 - mu) / sigma) - torch.special.ndtr((x - 1 / 255 - mu) / sigma)
    torch.testing.assert_close(logp, exact.log(), rtol=2e-3, atol=2e-3)
    edge = discretized_gaussian_log_likelihood(torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([0.0]))
    torch.testing.assert_close(edge, torch.special.ndtr(torch.tensor([1 / 255])).log(), rtol=2e-3, atol=2e-3)
    # the exact noise and the posterior variance (v = -1): no KL for t > 0
    ddpm = DDPM(100, 1e-4, 0.02)
    x0, noise, t = torch.rand(3, 1, 4, 4) * 2 - 1, torch.randn(3, 1, 4, 4), torch.tensor([1, 30, 99])
    xt = ddpm.q_sample(x0, t, noise)
    exact_out = torch.cat([noise, -torch.ones_like(noise)], 1)
    assert float(ddpm.vb_terms_bpd(exact_out, x0, xt, t).abs().max()) < 1e-3
    wrong = torch.cat([noise + 0.5, -torch.ones_like(noise)], 1)
    assert float(ddpm.vb_terms_bpd(wrong, x0, xt, t).min()) > 1e-3
    # t = 0: the decoder's NLL in bits per dimension
    t0 = torch.zeros(3, dtype=torch.long)
    xt0 = ddpm.q_sample(x0, t0, noise)
    out = ddpm.p_mean_variance(exact_out, xt0, t0, clip_denoised=False)
    nll = -mean_flat(discretized_gaussian_log_likelihood(x0, out["mean"], 0.5 * out["log_variance"]))
    torch.testing.assert_close(ddpm.vb_terms_bpd(exact_out, x0, xt0, t0), nll / math.log(2))


def test_the_hybrid_loss_trains_the_variance_only_through_the_vlb():
    ddpm = DDPM(100, 1e-4, 0.02)
    x0 = torch.rand(2, 1, 4, 4) * 2 - 1
    output = torch.zeros(2, 2, 4, 4, requires_grad=True)
    model = lambda x, t: output  # noqa: E731
    losses = ddpm.training_losses(model, x0, torch.tensor([3, 70]), vlb_weight=0.001)
    torch.testing.assert_close(losses["loss"], losses["mse"] + 0.001 * 100 * losses["vb"])
    losses["vb"].sum().backward()
    assert torch.count_nonzero(output.grad[:, :1]) == 0  # stop-gradient on the mean
    assert torch.count_nonzero(output.grad[:, 1:]) > 0
    # without learned sigma it is L_simple
    plain = ddpm.training_losses(lambda x, t: torch.zeros_like(x), x0, torch.tensor([3, 70]))
    assert set(plain) == {"mse", "loss"}


# -- sampling -------------------------------------------------------------------------------

class Counting(torch.nn.Module):
    """Wraps a DiT; records the timesteps of each call."""

    def __init__(self, model: DiT):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x, t, y=None):
        self.calls.append(t.tolist())
        return self.model(x, t, y)

    def forward_with_cfg(self, x, t, y, scale):
        self.calls.append(t.tolist())
        return self.model.forward_with_cfg(x, t, y, scale)


def test_space_timesteps_and_respacing_keep_the_marginals():
    assert space_timesteps(1000, [10]) == {0, 111, 222, 333, 444, 555, 666, 777, 888, 999}
    assert space_timesteps(1000, "ddim50") == set(range(0, 1000, 20))
    assert space_timesteps(100, "10,5") == {0, 5, 11, 16, 22, 27, 33, 38, 44, 49, 50, 62, 74, 87, 99}
    with pytest.raises(ValueError, match="cannot divide"):
        space_timesteps(10, [20])
    ddpm = DDPM(100, 1e-4, 0.02)
    keep = sorted(space_timesteps(100, [7]))
    spaced = respace(ddpm, keep)
    assert spaced.timesteps == 7 and spaced.timestep_map.tolist() == keep
    torch.testing.assert_close(spaced.alphas_cumprod, ddpm.alphas_cumprod[keep])


@pytest.mark.parametrize("sampler,scale", [("ddpm", 1.0), ("ddpm", 4.0), ("ddim", 2.0)])
def test_respaced_sampling_calls_the_model_once_a_step_with_the_original_timesteps(sampler, scale):
    model = Counting(randomize(tiny_dit()))
    ddpm = DDPM(100, 1e-4, 0.02)
    images = sample_images(ddpm, model, 3, 8, 1, y=torch.tensor([0, 1, 1]), sample_steps=6,
                           sampler=sampler, guidance_scale=scale,
                           generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 1, 8, 8) and float(images.abs().max()) <= 1.0
    assert len(model.calls) == 6
    assert [c[0] for c in model.calls] == sorted(space_timesteps(100, [6]), reverse=True)


def test_the_seed_sample_runs_every_step_and_p_sample_adds_no_noise_at_t0():
    model = Counting(randomize(DiT(8, 4, 1, 32, 1, 2, t_dim=16)))
    ddpm = DDPM(12, 1e-3, 0.2)
    assert ddpm.sample(model, 2, 8, 1).shape == (2, 1, 8, 8)  # the seed's call
    assert len(model.calls) == 12
    x, t0 = torch.randn(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        a = ddpm.p_sample(model, x, t0, generator=torch.Generator().manual_seed(1))
        b = ddpm.p_sample(model, x, t0, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("learned,steps,sampler", [(False, None, "ddpm"), (True, 10, "ddpm"),
                                                   (True, 10, "ddim")])
def test_the_optimal_denoiser_of_a_point_mass_samples_the_point(learned, steps, sampler):
    ddpm = DDPM(1000, 1e-4, 0.02)
    point = torch.full((1, 1, 4, 4), 0.3)

    def oracle(x, t):  # E[eps | x_t] when x_0 is always `point`; t: the original timesteps
        abar = ddpm.alphas_cumprod[t].view(-1, 1, 1, 1)
        eps = (x - abar.sqrt() * point) / (1 - abar).sqrt()
        return torch.cat([eps, torch.zeros_like(eps)], 1) if learned else eps

    x = sample_images(ddpm, oracle, 4, 4, 1, sample_steps=steps, sampler=sampler,
                      generator=torch.Generator().manual_seed(0))
    assert float((x - point).abs().max()) < 1e-4


def test_ddim_with_the_exact_noise_stays_on_the_forward_trajectory():
    ddpm = DDPM(100, 1e-4, 0.02)
    x0, noise = torch.rand(2, 1, 4, 4) * 1.6 - 0.8, torch.randn(2, 1, 4, 4)
    t = torch.tensor([40, 40])
    xt = ddpm.q_sample(x0, t, noise)
    step = ddim_step(ddpm, lambda x, tt: noise, xt, t, clip_denoised=False)
    torch.testing.assert_close(step, ddpm.q_sample(x0, t - 1, noise), atol=1e-5, rtol=1e-4)


# -- the evaluation -------------------------------------------------------------------------

def test_frechet_distance_is_zero_for_a_set_itself_and_the_squared_shift_for_a_shift():
    scipy_linalg = require_module("scipy.linalg")
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(300, 5, generator=gen) @ torch.randn(5, 5, generator=gen)
    assert frechet_distance(a, a) < 1e-8
    shift = torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0])
    assert math.isclose(frechet_distance(a, a + shift), float(shift.pow(2).sum()), rel_tol=1e-6)
    b = torch.randn(200, 5, generator=gen) * 2 + 1
    ma, mb = a.double().mean(0).numpy(), b.double().mean(0).numpy()
    ca, cb = np.cov(a.double().numpy().T), np.cov(b.double().numpy().T)
    covmean = scipy_linalg.sqrtm(ca @ cb).real
    reference = float(((ma - mb) ** 2).sum() + np.trace(ca + cb - 2 * covmean))
    assert math.isclose(frechet_distance(a, b), reference, rel_tol=1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(a[:1], b[:1])


def test_the_sample_classifier_learns_the_toy_classes():
    rng = np.random.default_rng(0)
    classifier = SampleClassifier(1, 2, width=8)
    opt = torch.optim.Adam(classifier.parameters(), lr=3e-3)
    for _ in range(20):
        batch = toy_batch(rng)
        x, y = torch.from_numpy(batch["image"]).float() / 127.5 - 1, torch.from_numpy(batch["label"])
        loss = torch.nn.functional.cross_entropy(classifier(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = toy_batch(rng, 64)
    x, y = torch.from_numpy(test["image"]).float() / 127.5 - 1, torch.from_numpy(test["label"])
    assert classifier_accuracy(classifier, x, y) > 0.95
    assert classifier_accuracy(classifier, x, 1 - y) < 0.05
    assert classifier.features(x).shape == (64, 16)
    assert image_grid(x[:5], 2, 3).shape == (2 * 9 + 1, 3 * 9 + 1, 3)
    with pytest.raises(ValueError, match="image_grid"):
        image_grid(x, 2, 3)  # 64 images do not fit


# -- the trainable --------------------------------------------------------------------------

def test_a_tiny_dit_learns_class_conditional_brightness():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = dit_preset("tiny", WIDTH=64, LR=3e-3, BATCH=32, sample_steps=20, guidance_scale=1.0,
                        eval_classifier=False)
    trainable = DiTTrainable.from_config(config, TOY_INFO)
    first = trainable.update({"images": toy_batch(rng)})["loss"]
    for _ in range(200):
        last = trainable.update({"images": toy_batch(rng)})["loss"]
    assert last < 0.5 * first
    samples = trainable.sample(labels=torch.tensor([0] * 16 + [1] * 16), seed=1)
    dark, bright = float(samples[:16].mean()), float(samples[16:].mean())
    assert dark < -0.25 and bright > 0.25, (dark, bright)  # real: -0.73 and 0.73


def test_update_metrics_state_dict_round_trip_and_exact_resume():
    rng = np.random.default_rng(1)
    config = dit_preset("tiny")
    trainable = DiTTrainable.from_config(config, TOY_INFO)
    assert trainable.config.num_classes == 2 and trainable.config.IMG_SIZE == 8
    assert trainable.data_spec().sample("images").seq_len == 1
    metrics = trainable.update({"images": toy_batch(rng, 16)})
    assert {"loss", "mse", "vb", "grad_norm", "skipped", "classifier/loss",
            "classifier/accuracy", "updates"} <= set(metrics)
    state = trainable.state_dict()
    assert state["format"] == "distwm.dit/1" and state["updates"] == 1
    restored = DiTTrainable.from_state(state)
    for a, b in zip(trainable.ema.parameters(), restored.ema.parameters()):
        assert torch.equal(a, b)
    batch = toy_batch(rng, 16)
    torch.manual_seed(5)
    expected = trainable.update({"images": batch})
    torch.manual_seed(5)
    got = restored.update({"images": batch})
    assert got["loss"] == expected["loss"] and got["updates"] == 2.0
    other = DiTTrainable.from_config(config.replace(WIDTH=64), TOY_INFO)
    with pytest.raises(ValueError, match="WIDTH: checkpoint 32 vs agent 64"):
        other.load_state_dict(state)


def test_report_has_the_sample_grid_one_row_per_class_and_the_evaluation():
    rng = np.random.default_rng(2)
    trainable = DiTTrainable.from_config(dit_preset("tiny"), TOY_INFO)
    trainable.update({"images": toy_batch(rng, 16)})
    report = trainable.report(toy_batch(rng, 16))
    rows, cols = 2, 2  # 2 classes (report_classes 4), report_samples_per_class 2
    assert report["images"]["samples"].shape == (rows * 9 + 1, cols * 9 + 1, 3)
    assert report["images"]["real"].shape == report["images"]["samples"].shape
    assert report["images"]["samples"].dtype == np.uint8
    scalars = report["scalars"]
    assert scalars["eval/chance_accuracy"] == 0.5
    assert 0.0 <= scalars["eval/sample_class_accuracy"] <= 1.0
    assert scalars["eval/frechet_distance"] >= 0.0 and "eval/frechet_distance_real_split" in scalars
    assert scalars["sampling/steps"] == 10


def test_bad_batches_and_data_are_refused_by_name():
    rng = np.random.default_rng(3)
    trainable = DiTTrainable.from_config(dit_preset("tiny"), TOY_INFO)
    batch = toy_batch(rng, 4)
    with pytest.raises(ValueError, match="sample 'images'"):
        trainable.update({"clips": batch})
    with pytest.raises(ValueError, match="no 'image'"):
        trainable.update({"images": {"label": batch["label"]}})
    with pytest.raises(ValueError, match=r"images \(B, 1, 8, 8\)"):
        trainable.update({"images": {**batch, "image": np.zeros((4, 3, 8, 8), np.uint8)}})
    with pytest.raises(ValueError, match="uint8"):
        trainable.update({"images": {**batch, "image": batch["image"].astype(np.float32)}})
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        trainable.update({"images": {**batch, "label": np.array([0, 1, 2, 0])}})
    with pytest.raises(ValueError, match="needs class labels"):
        trainable.update({"images": {"image": batch["image"]}})
    with pytest.raises(ValueError, match="square"):
        DiTTrainable.from_config(dit_preset("tiny"), {"frame_shape": [1, 8, 16], "num_classes": 2})
    with pytest.raises(ValueError, match="has 10 classes"):
        DiTTrainable.from_config(dit_preset("tiny", num_classes=3), {**TOY_INFO, "num_classes": 10})
    with pytest.raises(ValueError, match="num_classes is None"):
        DiTTrainable(dit_preset("tiny"))


# -- the config and the entry points ----------------------------------------------------------

def test_config_seed_defaults_sizes_presets_and_errors():
    seed = DiTConfig()
    assert (seed.BATCH, seed.LR, seed.WIDTH, seed.DEPTH, seed.EMA_DECAY) == (128, 2e-4, 384, 6, 0.999)
    assert get_dit_config(BATCH=64, EPOCHS=10, LR=1e-3).BATCH == 64
    assert get_dit_config(batch_size=8, lr=1e-3).BATCH == 8  # snake-case names of the seed's
    base = get_dit_config(model_size="B", PATCH=2)
    assert (base.DEPTH, base.WIDTH, base.HEADS, base.model_name) == (12, 768, 12, "DiT-B/2")
    xl = dit_preset("DiT-XL/2")
    assert (xl.DEPTH, xl.WIDTH, xl.HEADS, xl.LR, xl.EMA_DECAY) == (28, 1152, 16, 1e-4, 0.9999)
    assert dit_preset("digits").model_name == "DiT-custom/4"
    assert {"tiny", "digits", "DiT-S/8"} <= set(DIT_PRESETS)
    assert DiTConfig.from_yaml(xl.to_yaml()) == xl
    with pytest.raises(ValueError, match="model_size 'S' is depth 12"):
        DiTConfig(model_size="S")
    with pytest.raises(ValueError, match="multiple of PATCH"):
        DiTConfig(IMG_SIZE=30)
    with pytest.raises(ValueError, match="sample_steps"):
        DiTConfig(sample_steps=2000)
    with pytest.raises(ValueError, match="unknown DiT preset"):
        dit_preset("huge")
    with pytest.raises(ValueError, match="'ddpm', 'ddim'"):
        DiTConfig(sampler="euler")


def test_the_seed_entry_point_trains_on_digits_and_writes_its_files(tmp_path):
    require_module("sklearn", "pip install -e '.[digits]' (scikit-learn's digits)")
    from distwm.models.dit.fit import train_dit
    from distwm.utils.checkpoint import load_file

    trainable = DiT.train(1, "sklearn:digits:8", batch_size=16, img_size=8, channels=1, patch=4,
                          width=32, depth=1, heads=2, timesteps=50, workdir=str(tmp_path),
                          t_dim=16, sample_steps=4, eval_samples=20, report_classes=3,
                          report_samples_per_class=2, classifier_width=8, max_updates=3)
    assert trainable.updates == 3 and trainable.model.num_classes == 10
    assert (tmp_path / "generated_samples.png").is_file()
    restored = DiTTrainable.from_state(load_file(tmp_path / "dit_model.pth", "distwm.dit/1", "dit"))
    assert restored.updates == 3
    with pytest.raises(ValueError, match="unknown DiT data set"):
        train_dit(1, "mnist", workdir=str(tmp_path))
