"""distwm.utils.utils: dicts, configs, tensors, images, videos, plots; lazy package import."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import require_module

from distwm.utils import (
    AttrDict,
    StreamingVideoWriter,
    bottle,
    flatten_dict,
    get_combined_params,
    get_mask,
    lineplot,
    load_yml_config,
    normalize_frames_for_saving,
    postprocess_img,
    preprocess_img,
    save_video,
    to_tensor_obs,
    write_video,
)


def test_import_distwm_utils_is_lazy():
    code = (
        "import sys, distwm.utils as u; u.AttrDict; u.flatten_dict; u.setup_logging;"
        "bad = [m for m in ('torch', 'ray', 'cv2', 'matplotlib', 'imageio') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_flatten_dict():
    assert flatten_dict({"a": 2, "b": {"c": 20, "d": {"e": 1}}, "f": {}}) == {
        "a": 2, "b.c": 20, "b.d.e": 1}
    assert flatten_dict({"x": {"y": 1}}, sep="/", prefix="p") == {"p/x/y": 1}


def test_attrdict_access_and_pickle():
    d = AttrDict(lr=1e-3)
    d.batch = 16
    assert d["batch"] == 16 and d.lr == 1e-3
    with pytest.raises(AttributeError, match="nope"):
        d.nope
    assert getattr(d, "nope", 5) == 5
    del d.batch
    assert "batch" not in d
    again = pickle.loads(pickle.dumps(d))
    assert isinstance(again, AttrDict) and again.lr == 1e-3


def test_load_yml_config(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("model:\n  size: 3\n  layers: [{units: 4}]\nname: x\n")
    cfg = load_yml_config(path)
    assert cfg.model.size == 3 and cfg.model.layers[0].units == 4 and cfg.name == "x"
    with pytest.raises(FileNotFoundError, match="missing.yml"):
        load_yml_config(tmp_path / "missing.yml")
    (tmp_path / "list.yml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_yml_config(tmp_path / "list.yml")


def test_bottle_merges_and_splits_leading_axes():
    x, y = torch.randn(2, 3, 4), torch.randn(2, 3, 5)
    out = bottle(lambda a, b: torch.cat([a, b], -1).sum(-1, keepdim=True), x, y)
    assert out.shape == (2, 3, 1)
    torch.testing.assert_close(out[1, 2, 0], x[1, 2].sum() + y[1, 2].sum())
    mu, sd = bottle(lambda a: (a * 2, a * 3), x)
    assert mu.shape == sd.shape == (2, 3, 4)
    with pytest.raises(ValueError, match="leading axes"):
        bottle(torch.add, x, torch.randn(3, 2, 4))


def test_get_combined_params():
    a, b = torch.nn.Linear(2, 3), torch.nn.Linear(3, 1)
    assert [p.shape for p in get_combined_params(a, b)] == [(3, 2), (3,), (1, 3), (1,)]


def test_get_mask_torch_and_numpy():
    m = get_mask(torch.zeros(3, 4, 2, dtype=torch.float64), [1, 4, 0])
    assert m.dtype == torch.float64
    torch.testing.assert_close(m, torch.tensor(
        [[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.float64))
    n = get_mask(np.zeros(2), np.array([2, 1]))
    np.testing.assert_array_equal(n, [[1, 1], [1, 0]])
    with pytest.raises(ValueError, match="lengths"):
        get_mask(np.zeros((2, 3)), [1, 2, 3])


def test_pre_and_postprocess_img_bit_depth():
    torch.manual_seed(0)
    raw = torch.arange(0, 256, dtype=torch.float32).reshape(1, 16, 16)
    obs = preprocess_img(raw.clone(), 5)
    assert obs.min() >= -0.5 and obs.max() <= 0.5
    back = postprocess_img(obs.numpy(), 5)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, (raw.numpy().astype(np.uint8) // 8) * 8)
    np.testing.assert_array_equal(postprocess_img(np.array([-0.5, 0.0, 0.49]), 8), [0, 128, 253])
    with pytest.raises(ValueError, match="bit depth"):
        postprocess_img(np.zeros(2), 9)


def test_to_tensor_obs():
    img = np.full((32, 48, 3), 200, np.uint8)
    t = to_tensor_obs(img)
    assert t.shape == (3, 64, 64) and t.dtype == torch.float32
    torch.testing.assert_close(t, torch.full((3, 64, 64), 200.0))


def test_normalize_frames_for_saving_layouts():
    chw = np.full((2, 1, 4, 5), 0.0, np.float32) - 0.5  # [-0.5, 0.5] single channel
    out = normalize_frames_for_saving(chw)
    assert out.shape == (2, 4, 5, 3) and out.max() == 0.0
    rgba = np.full((1, 4, 5, 4), 255, np.uint8)
    np.testing.assert_allclose(normalize_frames_for_saving(rgba), np.ones((1, 4, 5, 3)))
    with pytest.raises(ValueError, match="channels"):
        normalize_frames_for_saving(np.zeros((2, 7, 4, 5)))


def _frames(t=6, h=16, w=24):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def test_write_gif_is_readable(tmp_path):
    import imageio.v2 as iio

    frames = _frames()
    path = write_video(frames, tmp_path / "sub" / "v.gif", fps=10)
    back = iio.mimread(path)
    assert len(back) == 6 and back[0].shape[:2] == (16, 24)
    with pytest.raises(ValueError, match="webm"):
        write_video(frames, tmp_path / "v.webm")


def test_mp4_video_and_save_video(tmp_path):
    require_module("imageio_ffmpeg")
    import imageio.v2 as iio

    frames = np.linspace(0, 1, 5 * 3 * 16 * 16, dtype=np.float32).reshape(5, 3, 16, 16)
    path = save_video(frames, str(tmp_path), "rollout")
    assert path == os.path.join(str(tmp_path), "rollout.mp4")
    assert len(iio.mimread(path)) == 5
    png = iio.imread(tmp_path / "rollout_debug_frame.png")
    assert png.shape == (16, 16, 3)


def test_streaming_video_writer(tmp_path):
    import imageio.v2 as iio

    path = tmp_path / "s.gif"
    writer = StreamingVideoWriter(str(path), fps=5, format="gif")
    assert not path.exists()
    with writer:
        for frame in _frames(t=4):
            writer.write_frame(frame)
        with pytest.raises(ValueError, match="frame_shape"):
            writer.write_frame(np.zeros((8, 8, 3), np.uint8))
    assert writer.frames_written == 4
    assert len(iio.mimread(path)) == 4
    with pytest.raises(RuntimeError, match="closed"):
        writer.write_frame(_frames(t=1)[0])


def test_lineplot_png(tmp_path):
    xs = np.arange(5)
    single = lineplot(xs, xs**2, "single", path=str(tmp_path))
    band = lineplot(xs, np.random.default_rng(0).random((5, 3)), "band", path=str(tmp_path))
    multi = lineplot(xs, {"a": xs, "b": -xs}, "multi", path=str(tmp_path), xaxis="step")
    for p in (single, band, multi):
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
