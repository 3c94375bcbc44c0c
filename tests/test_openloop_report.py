"""Open-loop reports (Dreamer, PlaNet) and the media helpers that draw them."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from dreamer_helpers import random_batch, tiny_config
from planet_testing import tiny_planet_config

from distwm.models.dreamer import Dreamer
from distwm.models.dreamer import report as dreamer_report
from distwm.models.planet import report as planet_report
from distwm.models.planet.core import PlanetCore
from distwm.models.planet.losses import prepare_observation
from distwm.utils import media
from distwm.utils.utils import postprocess_img

IMAGE = {"image": (3, 64, 64)}
STATE = {"state": (4,)}
B, T, CONTEXT, BORDER = 2, 8, 5, 2
CELL = 64 + 2 * BORDER


def cell(strip: np.ndarray, row: int, step: int) -> np.ndarray:
    """The interior (64 x 64 x 3) of frame ``step`` in row ``row`` of a strip."""
    y, x = row * CELL + BORDER, step * CELL + BORDER
    return strip[y:y + 64, x:x + 64]


def expected_error(model01: np.ndarray, truth01: np.ndarray) -> np.ndarray:
    return np.round(np.clip((model01 - truth01 + 1.0) / 2.0, 0, 1) * 255.0)


# -- media -------------------------------------------------------------------------------------
def test_strip_layout_rows_error_and_borders():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (B, T, 3, 64, 64), dtype=np.uint8)
    model = rng.integers(0, 256, (B, T, 3, 64, 64), dtype=np.uint8)
    strip = media.open_loop_strip(truth, model, CONTEXT)
    assert strip.dtype == np.uint8
    assert strip.shape == (B * 3 * CELL, T * CELL, 3)
    for b in range(B):
        for t in (0, CONTEXT - 1, CONTEXT, T - 1):
            hwc_t, hwc_m = truth[b, t].transpose(1, 2, 0), model[b, t].transpose(1, 2, 0)
            np.testing.assert_array_equal(cell(strip, 3 * b, t), hwc_t)
            np.testing.assert_array_equal(cell(strip, 3 * b + 1, t), hwc_m)
            err = cell(strip, 3 * b + 2, t).astype(float)
            want = expected_error(hwc_m / 255.0, hwc_t / 255.0)
            assert np.abs(err - want).max() <= 1.0
    # border colour: context frames green, predicted frames red, in every row
    for row in range(3 * B):
        for t in range(T):
            corner = strip[row * CELL, t * CELL]
            want = media.CONTEXT_COLOR if t < CONTEXT else media.PREDICTED_COLOR
            assert tuple(corner) == want, (row, t, corner)
    # identical frames: a uniform grey error row
    same = media.open_loop_strip(truth, truth, CONTEXT)
    assert set(np.unique(cell(same, 2, 3))) == {128}


def test_strip_accepts_channels_last_float_and_grey():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 256, (1, 3, 3, 8, 8), dtype=np.uint8)
    model = rng.integers(0, 256, (1, 3, 3, 8, 8), dtype=np.uint8)
    chw = media.open_loop_strip(truth, model, 1)
    hwc = media.open_loop_strip(truth.transpose(0, 1, 3, 4, 2), model.transpose(0, 1, 3, 4, 2), 1)
    np.testing.assert_array_equal(chw, hwc)
    floats = media.open_loop_strip(truth / 255.0, model / 255.0, 1)
    assert np.abs(floats.astype(int) - chw.astype(int)).max() <= 1
    grey = media.open_loop_strip(truth[:, :, :1], model[:, :, :1], 1)
    assert grey.shape == chw.shape
    inner = grey[2:10, 2:10]  # the first truth frame inside its border
    np.testing.assert_array_equal(inner, np.repeat(truth[0, 0, 0][..., None], 3, -1))


def test_video_layout():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 256, (B, 4, 3, 16, 16), dtype=np.uint8)
    model = rng.integers(0, 256, (B, 4, 3, 16, 16), dtype=np.uint8)
    video = media.open_loop_video(truth, model)
    assert video.shape == (4, B * 16, 3 * 16, 3) and video.dtype == np.uint8
    np.testing.assert_array_equal(video[2, 16:32, :16], truth[1, 2].transpose(1, 2, 0))
    np.testing.assert_array_equal(video[2, 16:32, 16:32], model[1, 2].transpose(1, 2, 0))
    err = video[2, 16:32, 32:].astype(float)
    want = expected_error(model[1, 2].transpose(1, 2, 0) / 255.0, truth[1, 2].transpose(1, 2, 0) / 255.0)
    assert np.abs(err - want).max() <= 1.0
    framed = media.open_loop_video(truth, model, context=1)
    assert framed.shape == (4, B * 20, 3 * 20, 3)
    assert tuple(framed[0, 0, 0]) == media.CONTEXT_COLOR
    assert tuple(framed[1, 0, 0]) == media.PREDICTED_COLOR


@pytest.mark.parametrize("truth_shape, model_shape, message", [
    ((8, 3, 64, 64), (8, 3, 64, 64), r"\(8, 3, 64, 64\)"),
    ((2, 8, 5, 64, 64), (2, 8, 5, 64, 64), r"\(2, 8, 5, 64, 64\).*channel"),
    ((2, 8, 3, 64, 64), (2, 8, 3, 32, 32), r"truth .*\(2, 8, 3, 64, 64\).*model .*\(2, 8, 3, 32, 32\)"),
])
def test_media_rejects_bad_shapes(truth_shape, model_shape, message):
    truth, model = np.zeros(truth_shape, np.uint8), np.zeros(model_shape, np.uint8)
    with pytest.raises(ValueError, match=message):
        media.open_loop_strip(truth, model, 1)
    with pytest.raises(ValueError, match=message):
        media.open_loop_video(truth, model)


def test_media_rejects_bad_context_dtype_and_images():
    frames = np.zeros((1, 4, 3, 8, 8), np.uint8)
    with pytest.raises(ValueError, match=r"context must be in 0..T=4.*got 5"):
        media.open_loop_strip(frames, frames, 5)
    with pytest.raises(ValueError, match="dtype int64"):
        media.open_loop_strip(frames.astype(np.int64), frames, 1)
    with pytest.raises(ValueError, match=r"\(H, W, 3\).*got shape \(2, 8, 8, 3\)"):
        media.save_png(np.zeros((2, 8, 8, 3), np.uint8), "x.png")
    with pytest.raises(ValueError, match="uint8.*float64"):
        media.save_video(np.zeros((2, 8, 8, 3)), "x.gif")


def test_media_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, distwm.utils.media; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_save_png_and_video(tmp_path):
    import imageio.v2 as iio

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    path = media.save_png(image, tmp_path / "sub" / "strip.png")
    np.testing.assert_array_equal(iio.imread(path), image)
    frames = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    gif = media.save_video(frames, tmp_path / "v.gif", fps=5)
    assert len(iio.mimread(gif)) == 3


# -- Dreamer -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dreamer():
    torch.manual_seed(0)
    return Dreamer(tiny_config("v3"), IMAGE, 3)


@pytest.fixture(scope="module")
def image_batch():
    return random_batch(IMAGE, 3, False, batch=B, steps=T, seed=4)


def _dreamer_prior_only(wm, batch, seed=0):
    """Decoded frames of the prior alone (no observation at all), seeded."""
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        action = torch.as_tensor(batch["action"])
        first = torch.as_tensor(batch["is_first"]).float()
        init = wm.rssm.init_state(B)
        state, frames = init, []
        for t in range(T):
            keep = 1.0 - first[:, t]
            state = wm.rssm.mask_state(state, keep, init)
            state = wm.rssm.imagine_step(state, action[:, t] * keep[:, None])
            frames.append(wm.decoder(wm.rssm.get_feat(state))["image"].mode())
        return (torch.stack(frames, 1) + 0.5).clamp(0, 1).numpy()


def test_dreamer_report_shapes_and_scalars(dreamer, image_batch):
    report = dreamer.report(image_batch) if hasattr(dreamer, "report") else \
        dreamer_report.open_loop_report(dreamer, image_batch)
    assert set(report) == {"scalars", "images", "videos"}
    strip, video = report["images"]["openloop"], report["videos"]["openloop"]
    assert strip.shape == (B * 3 * CELL, T * CELL, 3) and strip.dtype == np.uint8
    assert video.shape == (T, B * CELL, 3 * CELL, 3) and video.dtype == np.uint8
    scalars = report["scalars"]
    assert {"openloop/image_mse", "openloop/image_mse_context", "openloop/reward_mse"} <= set(scalars)
    assert all(np.isfinite(v) for v in scalars.values())
    wrapped = dreamer_report.open_loop_report(dreamer, {"sequences": image_batch})
    assert wrapped["scalars"] == scalars  # the update() form of a batch, same seed
    one = dreamer_report.open_loop_report(dreamer, image_batch, context=CONTEXT, rows=1)
    assert one["images"]["openloop"].shape == (3 * CELL, T * CELL, 3)


def test_dreamer_context_frames_are_reconstructions(dreamer, image_batch):
    wm = dreamer.world_model
    pred = dreamer_report.open_loop_predictions(dreamer, image_batch, CONTEXT, seed=0)
    assert pred["image_pred"].shape == (B, T, 3, 64, 64)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        obs = {"image": torch.as_tensor(image_batch["image"][:, :CONTEXT]).float() / 255.0 - 0.5}
        post, _ = wm.rssm.observe(wm.encoder(obs), torch.as_tensor(image_batch["action"][:, :CONTEXT]),
                                  torch.as_tensor(image_batch["is_first"][:, :CONTEXT]))
        recon = (wm.decoder(wm.rssm.get_feat(post))["image"].mode() + 0.5).clamp(0, 1).numpy()
    np.testing.assert_allclose(pred["image_pred"][:, :CONTEXT], recon, atol=1e-5)
    prior_only = _dreamer_prior_only(wm, image_batch)
    assert np.abs(pred["image_pred"][:, :CONTEXT] - prior_only[:, :CONTEXT]).mean() > 1e-3


def test_dreamer_predictions_are_open_loop(dreamer, image_batch):
    base = dreamer_report.open_loop_predictions(dreamer, image_batch, CONTEXT)
    future = dict(image_batch, image=image_batch["image"].copy())
    future["image"][:, CONTEXT:] = 255 - future["image"][:, CONTEXT:]
    changed = dreamer_report.open_loop_predictions(dreamer, future, CONTEXT)
    np.testing.assert_allclose(changed["image_pred"], base["image_pred"], atol=1e-6)
    assert not np.allclose(changed["image"], base["image"])
    past = dict(image_batch, image=image_batch["image"].copy())
    past["image"][:, :CONTEXT] = 255 - past["image"][:, :CONTEXT]
    moved = dreamer_report.open_loop_predictions(dreamer, past, CONTEXT)
    assert np.abs(moved["image_pred"][:, CONTEXT:] - base["image_pred"][:, CONTEXT:]).max() > 1e-4


def test_dreamer_open_loop_restarts_at_episode_start(dreamer, image_batch):
    restart = dict(image_batch, is_first=image_batch["is_first"].copy(), action=image_batch["action"].copy())
    restart["is_first"][:, CONTEXT + 1] = True
    base = dreamer_report.open_loop_predictions(dreamer, restart, CONTEXT)
    past = dict(restart, image=restart["image"].copy())
    past["image"][:, :CONTEXT] = 255 - past["image"][:, :CONTEXT]
    moved = dreamer_report.open_loop_predictions(dreamer, past, CONTEXT)
    # before the new episode the prediction carries what the model saw; after, it does not
    assert np.abs(moved["image_pred"][:, CONTEXT] - base["image_pred"][:, CONTEXT]).max() > 1e-4
    np.testing.assert_allclose(moved["image_pred"][:, CONTEXT + 1:], base["image_pred"][:, CONTEXT + 1:],
                               atol=1e-5)


def test_dreamer_error_row_and_mse(dreamer, image_batch):
    pred = dreamer_report.open_loop_predictions(dreamer, image_batch, CONTEXT)
    report = dreamer_report.open_loop_report(dreamer, image_batch, CONTEXT)
    strip = report["images"]["openloop"]
    for b, t in ((0, 0), (1, CONTEXT + 1)):
        truth, model = pred["image"][b, t].transpose(1, 2, 0), pred["image_pred"][b, t].transpose(1, 2, 0)
        np.testing.assert_array_equal(cell(strip, 3 * b, t), np.round(truth * 255))
        assert np.abs(cell(strip, 3 * b + 1, t) - np.round(model * 255)).max() <= 1
        assert np.abs(cell(strip, 3 * b + 2, t) - expected_error(model, truth)).max() <= 1
    want = np.mean((pred["image_pred"][:, CONTEXT:] - pred["image"][:, CONTEXT:]) ** 2)
    assert report["scalars"]["openloop/image_mse"] == pytest.approx(want, rel=1e-5)


def test_dreamer_report_restores_modes_and_rng(dreamer, image_batch):
    wm = dreamer.world_model
    wm.train()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    dreamer_report.open_loop_report(dreamer, image_batch)
    np.testing.assert_array_equal(torch.rand(3), expected)
    assert wm.training and all(m.training for m in wm.modules())
    wm.eval()
    dreamer_report.open_loop_report(dreamer, image_batch)
    assert not wm.training
    wm.train()
    # any object with a world_model (e.g. the class renamed DreamerCore) works
    renamed = types.SimpleNamespace(world_model=wm)
    assert dreamer_report.open_loop_report(renamed, image_batch)["images"]


def test_dreamer_state_only_gives_scalars_only():
    agent = Dreamer(tiny_config("v3"), STATE, 2)
    batch = random_batch(STATE, 2, False, batch=B, steps=T)
    report = dreamer_report.open_loop_report(agent, batch, CONTEXT)
    assert report["images"] == {} and report["videos"] == {}
    assert "openloop/state_mse" in report["scalars"] and "openloop/image_mse" not in report["scalars"]
    assert np.isfinite(report["scalars"]["openloop/state_mse"])


def test_dreamer_mixed_observations_give_images_and_state_mse():
    shapes = {**IMAGE, **STATE}
    agent = Dreamer(tiny_config("v1"), shapes, 2, discrete=False)
    report = dreamer_report.open_loop_report(agent, random_batch(shapes, 2, False, batch=B, steps=T), CONTEXT)
    assert report["images"]["openloop"].shape == (B * 3 * CELL, T * CELL, 3)
    assert {"openloop/image_mse", "openloop/state_mse"} <= set(report["scalars"])


def test_dreamer_report_rejects_bad_batches(dreamer, image_batch):
    with pytest.raises(ValueError, match=r"T=8 .*context=8"):
        dreamer_report.open_loop_report(dreamer, image_batch, context=8)
    with pytest.raises(ValueError, match=r"lacks keys \['image'\]"):
        dreamer_report.open_loop_report(dreamer, {k: v for k, v in image_batch.items() if k != "image"})
    with pytest.raises(TypeError, match="world model"):
        dreamer_report.open_loop_report(object(), image_batch)


# -- PlaNet ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planet():
    torch.manual_seed(0)
    agent = PlanetCore(tiny_planet_config(), IMAGE["image"], 2, obs_key="image")
    # An untrained tiny PlaNet decodes nearly the same frame whatever its latent state; larger
    # weights make its frames depend on what it observed, which the tests below need to see.
    with torch.no_grad():
        for param in agent.rssm.parameters():
            if param.dim() > 1:
                param.mul_(3.0)
    return agent


@pytest.fixture(scope="module")
def planet_batch():
    return random_batch(IMAGE, 2, False, batch=B, steps=T, seed=5)


def test_planet_report_shapes_and_error_row(planet, planet_batch):
    report = planet_report.open_loop_report(planet, planet_batch, CONTEXT)
    strip, video = report["images"]["openloop"], report["videos"]["openloop"]
    assert strip.shape == (B * 3 * CELL, T * CELL, 3) and strip.dtype == np.uint8
    assert video.shape == (T, B * CELL, 3 * CELL, 3)
    assert {"openloop/image_mse", "openloop/image_mse_context", "openloop/reward_mse"} <= set(report["scalars"])
    pred = planet_report.open_loop_predictions(planet, planet_batch, CONTEXT)
    # model frames come back quantised to bit_depth bits (multiples of 2 ** (8 - bit_depth),
    # or 255 where clipped)
    step = 2 ** (8 - planet.config.bit_depth)
    levels = np.round(pred["image_pred"] * 255)
    assert np.all((levels % step == 0) | (levels == 255))
    assert len(np.unique(levels)) > 1
    b, t = 1, T - 1
    truth, model = pred["image"][b, t].transpose(1, 2, 0), pred["image_pred"][b, t].transpose(1, 2, 0)
    np.testing.assert_array_equal(cell(strip, 3 * b, t), planet_batch["image"][b, t].transpose(1, 2, 0))
    assert np.abs(cell(strip, 3 * b + 2, t) - expected_error(model, truth)).max() <= 1


def test_planet_context_frames_are_reconstructions(planet, planet_batch):
    rssm = planet.rssm
    pred = planet_report.open_loop_predictions(planet, planet_batch, CONTEXT, seed=0)
    tm = lambda k: torch.as_tensor(planet_batch[k]).transpose(0, 1)  # noqa: E731
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        obs = prepare_observation(tm("image"), planet.config.bit_depth)
        seq = rssm.observe(rssm.encoder(obs[:CONTEXT]), tm("action")[:CONTEXT].float(),
                           tm("is_first")[:CONTEXT].float())
        recon = rssm.decode(seq.states, seq.latents).transpose(0, 1).numpy()
        recon = postprocess_img(recon, planet.config.bit_depth) / 255.0
        # the prior alone, with no observation
        h, s = torch.zeros(B, rssm.state_size), torch.zeros(B, rssm.latent_size)
        prior = []
        for t in range(CONTEXT):
            h = rssm.deterministic_state_fwd(h, s, tm("action")[t].float() * (t > 0))
            s = rssm.state_prior(h, sample=True)
            prior.append(rssm.decode(h, s))
        prior = postprocess_img(torch.stack(prior, 1).numpy(), planet.config.bit_depth) / 255.0
    np.testing.assert_allclose(pred["image_pred"][:, :CONTEXT], recon, atol=1e-6)
    assert np.abs(pred["image_pred"][:, :CONTEXT] - prior).mean() > 1e-3


def test_planet_predictions_are_open_loop_and_restore_mode(planet, planet_batch):
    planet.rssm.train()
    base = planet_report.open_loop_predictions(planet, planet_batch, CONTEXT)
    assert planet.rssm.training
    future = dict(planet_batch, image=planet_batch["image"].copy())
    future["image"][:, CONTEXT:] = 255 - future["image"][:, CONTEXT:]
    changed = planet_report.open_loop_predictions(planet, future, CONTEXT)
    np.testing.assert_allclose(changed["image_pred"], base["image_pred"], atol=1e-6)
    past = dict(planet_batch, image=planet_batch["image"].copy())
    past["image"][:, :CONTEXT] = 255 - past["image"][:, :CONTEXT]
    moved = planet_report.open_loop_predictions(planet, past, CONTEXT)
    assert np.abs(moved["image_pred"][:, CONTEXT:] - base["image_pred"][:, CONTEXT:]).max() > 1e-4


def test_planet_state_only_gives_scalars_only():
    agent = PlanetCore(tiny_planet_config(), STATE["state"], 2, obs_key="state")
    batch = random_batch(STATE, 2, False, batch=B, steps=T)
    report = planet_report.open_loop_report(agent, batch, CONTEXT)
    assert report["images"] == {} and report["videos"] == {}
    assert np.isfinite(report["scalars"]["openloop/state_mse"])
    with pytest.raises(ValueError, match="context=8"):
        planet_report.open_loop_report(agent, batch, context=8)
