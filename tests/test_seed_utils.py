"""The seed's utility functions: utils.utils extras, data_utils, jit_utils and memory_utils."""

from __future__ import annotations

import copy
import functools
import os
import pickle
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch
from conftest import require_module
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- utils.utils: lazy names -----------------------------------------------------------------------

def test_seed_names_load_lazily_and_apply_masks_is_the_jepa_one():
    code = ("import sys, distwm.utils.utils as u; assert 'torch' not in sys.modules; "
            "u.combine_videos; u.TensorBoardMetrics; assert 'torch' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
    from distwm.utils import jepa_utils, utils

    for name in utils.__all__:
        assert getattr(utils, name) is not None, name
    assert utils.apply_masks is jepa_utils.apply_masks
    x = torch.arange(2 * 5 * 3.0).reshape(2, 5, 3)
    out = utils.apply_masks(x, [torch.tensor([[0, 4], [1, 2]]), torch.tensor([[3, 3], [0, 0]])])
    assert out.shape == (4, 2, 3) and torch.equal(out[1, 1], x[1, 2]) and torch.equal(out[2, 0], x[0, 3])


# -- videos, frames, results directories ------------------------------------------------------------

def _read_frames(path):
    import imageio.v2 as iio

    reader = iio.get_reader(path)
    try:
        return [np.asarray(f) for f in reader]
    finally:
        reader.close()


def test_combine_videos_concatenates_resizes_and_excludes_its_output(tmp_path):
    from distwm.utils.utils import combine_videos, write_video

    rng = np.random.default_rng(0)
    write_video(rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8), tmp_path / "vid_0.gif", fps=10)
    write_video(rng.integers(0, 255, (2, 32, 24, 3), dtype=np.uint8), tmp_path / "vid_1.gif", fps=10)
    (tmp_path / "notes.txt").write_text("not a video")
    out = combine_videos(tmp_path, output_name="all.gif", pattern="*.gif", fps=5)
    assert out == os.path.join(str(tmp_path), "all.gif")
    frames = _read_frames(out)
    assert len(frames) == 5 and all(f.shape[:2] == (16, 16) for f in frames)
    assert len(_read_frames(combine_videos(tmp_path, "all.gif", "*.gif"))) == 5  # its output is no input
    with pytest.raises(ValueError, match="resize=True"):
        combine_videos(tmp_path, "strict.gif", "vid_*.gif", resize=False)
    assert not os.path.exists(tmp_path / "strict.gif") and not os.path.exists(tmp_path / "strict.partial.gif")
    with pytest.raises(FileNotFoundError, match="match 'x_\\*.mp4'"):
        combine_videos(tmp_path, pattern="x_*.mp4")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        combine_videos(tmp_path / "missing")
    with pytest.raises(ValueError, match="choose one of"):
        combine_videos(tmp_path, output_name="all.webm", pattern="*.gif")


def test_combine_videos_mp4(tmp_path):
    require_module("imageio_ffmpeg", "MP4 video: pip install -e '.[logging]'")
    from distwm.utils.utils import combine_videos, write_video

    for i, steps in enumerate((3, 2)):
        write_video(np.full((steps, 16, 16, 3), 60 * (i + 1), np.uint8), tmp_path / f"vid_{i}.mp4", fps=10)
    frames = _read_frames(combine_videos(tmp_path))
    assert len(frames) == 5 and frames[0].shape == (16, 16, 3)
    assert abs(float(frames[0].mean()) - 60) < 8 and abs(float(frames[-1].mean()) - 120) < 8


def test_ensure_results_dir_exists(tmp_path):
    from distwm.utils.utils import ensure_results_dir_exists

    assert ensure_results_dir_exists(tmp_path) == str(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing"):
        ensure_results_dir_exists(tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(FileNotFoundError, match="it is a file"):
        ensure_results_dir_exists(tmp_path / "file")


def test_save_frames_writes_the_grid(tmp_path):
    import imageio.v2 as iio

    from distwm.utils.utils import save_frames

    target = torch.rand(7, 3, 16, 16) - 0.5
    path = save_frames(target, torch.zeros(7, 3, 8, 8), target.numpy(), str(tmp_path / "sub" / "grid"), n_rows=4)
    assert path == str(tmp_path / "sub" / "grid.png")
    grid = iio.imread(path)
    assert grid.shape == (4 * 16, 2 * 3 * 16, 3)  # 4 rows, 2 columns of (target|prior|posterior)
    np.testing.assert_array_equal(grid[:16, :16], grid[:16, 32:48])  # posterior == target
    assert (grid[16:32, 16:32] == 0).all()  # the all-zero prior, resized from 8x8
    with pytest.raises(ValueError, match="pred_prior has 6 frames"):
        save_frames(target, target[:6], target, str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="n_rows"):
        save_frames(target, target, target, str(tmp_path / "bad"), n_rows=0)


# -- replay memories ----------------------------------------------------------------------------------

def _filled_buffer():
    from distwm.memory.dreamer_memory import ReplayBuffer

    buffer = ReplayBuffer(size=32, obs_shape=(3, 4, 4), action_size=2, seq_len=4, batch_size=2,
                          chunk_length=4, seed=0)
    rng = np.random.default_rng(1)
    for t in range(12):
        buffer.add({"image": rng.integers(0, 255, (3, 4, 4), dtype=np.uint8)},
                   rng.normal(size=2).astype(np.float32), float(t), t == 7, is_first=t in (0, 8))
    return buffer


def _assert_same_state(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for key in a:
        if key == "__meta__":
            assert a[key] == b[key]
        else:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_load_memory_round_trips_a_saved_replay(tmp_path, suffix):
    from distwm.utils.utils import load_memory

    buffer = _filled_buffer()
    path = buffer.save(tmp_path / f"replay{suffix}")
    memory = load_memory(path, "cpu")
    assert memory.device == torch.device("cpu")
    assert (memory.capacity, memory.chunk_length, memory.seq_len) == (32, 4, 4)
    assert memory.size == len(buffer) == 12 and memory.total_inserted == 12
    _assert_same_state(memory.state_dict(), buffer.replay.state_dict())
    batch = memory.sample(3, rng=np.random.default_rng(0))
    assert batch["image"].shape == (3, 4, 3, 4, 4) and batch["image"].dtype == np.uint8


def test_load_memory_reads_a_torch_saved_snapshot_state(tmp_path):
    from distwm.utils.utils import load_memory

    state = _filled_buffer().replay.state_dict()
    as_tensors = {k: v if k == "__meta__" else torch.as_tensor(np.asarray(v)) for k, v in state.items()}
    torch.save(as_tensors, tmp_path / "replay.pt")
    _assert_same_state(load_memory(tmp_path / "replay.pt", torch.device("cpu")).state_dict(), state)


class _Payload:
    """Unpickling this would run code: it must never be loaded."""

    def __reduce__(self):
        return (os.system, ("echo unpickled > /dev/null",))


def test_load_memory_never_unpickles(tmp_path):
    from distwm.memory.planet_memory import Episode, Memory
    from distwm.utils.checkpoint import CorruptFileError
    from distwm.utils.utils import load_memory

    episode = Episode()
    episode.append(np.zeros(2), np.zeros(1), 0.0, False)
    episode.terminate(np.zeros(2))
    memory = Memory()
    memory.append(episode)
    (tmp_path / "memory.pkl").write_bytes(pickle.dumps(memory))
    (tmp_path / "payload.pkl").write_bytes(pickle.dumps(_Payload()))
    torch.save(memory, tmp_path / "memory.pth")
    for name in ("memory.pkl", "payload.pkl"):
        with pytest.raises(CorruptFileError, match="pickle file, which load_memory never unpickles"):
            load_memory(tmp_path / name, "cpu")
    with pytest.raises(CorruptFileError, match="never loads"):
        load_memory(tmp_path / "memory.pth", "cpu")
    (tmp_path / "junk.npz").write_bytes(b"not a snapshot")
    with pytest.raises(CorruptFileError, match="junk.npz"):
        load_memory(tmp_path / "junk.npz", "cpu")
    with pytest.raises(FileNotFoundError):
        load_memory(tmp_path / "missing.npz", "cpu")
    with pytest.raises(RuntimeError):
        load_memory(tmp_path / "memory.pkl", "no-such-device")


# -- metrics -------------------------------------------------------------------------------------------

def test_tensorboard_metrics_scalars_histograms_and_per_key_steps(tmp_path):
    require_module("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from distwm.utils.utils import TensorBoardMetrics

    log_dir = tmp_path / "tb"
    metrics = TensorBoardMetrics(log_dir)
    assert not log_dir.exists()  # nothing is opened before the first update
    assert metrics.assign_type("loss", 0.5) == "scalar"
    assert metrics.assign_type("returns", [1.0, 2.0]) == "histogram"
    with pytest.raises(TypeError, match="'name'.*str values cannot be logged"):
        metrics.assign_type("name", "x")
    with metrics:
        metrics.update({"loss": 1.0, "train": {"kl": torch.tensor(2.0)}, "returns": np.arange(4.0)})
        metrics.update({"loss": 3.0})
        with pytest.raises(ValueError, match="was logged as a scalar"):
            metrics.update({"loss": [1.0, 2.0]})
    assert metrics.steps == {"loss": 2, "train/kl": 1, "returns": 1}
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(0, 1.0), (1, 3.0)]
    assert [e.value for e in events.Scalars("train/kl")] == [2.0]
    histogram = events.Histograms("returns")[0].histogram_value
    assert (histogram.num, histogram.min, histogram.max) == (4, 0.0, 3.0)


def test_plot_metrics_writes_one_plot_per_series(tmp_path):
    from distwm.utils.utils import plot_metrics

    files = plot_metrics({"reward": [1, 2, 3], "loss/kl": np.ones((5, 3))}, tmp_path / "plots", "train_")
    assert [os.path.basename(f) for f in files] == ["train_reward.png", "train_loss_kl.png"]
    assert all(os.path.getsize(f) > 0 for f in files)
    with pytest.raises(ValueError, match="'bad' must be a non-empty"):
        plot_metrics({"bad": []}, tmp_path, "")


# -- apply_model ---------------------------------------------------------------------------------------

def test_apply_model_merges_and_restores_leading_dims():
    from distwm.utils.utils import apply_model

    linear = nn.Linear(4, 3)
    x = torch.randn(5, 2, 4)
    out = apply_model(linear, x, ignore_dim=2)
    assert out.shape == (5, 2, 3) and torch.allclose(out[3, 1], linear(x[3, 1]))
    assert apply_model(linear, x[0, 0], ignore_dim=0).shape == (3,)
    assert torch.equal(apply_model(linear, x), linear(x))

    def two_heads(obs, scale):
        return {"mean": obs * scale, "parts": (obs.sum(-1), obs.mean())}

    result = apply_model(two_heads, {"obs": x, "scale": 2.0}, ignore_dim=2)
    assert result["mean"].shape == (5, 2, 4) and result["parts"][0].shape == (5, 2)
    assert result["parts"][1].shape == ()  # a 0-d output is returned as it is
    cat = apply_model(lambda a, b: torch.cat([a, b], -1), (x, x), ignore_dim=1)
    assert cat.shape == (5, 2, 8)
    with pytest.raises(ValueError, match="same 2 leading dims"):
        apply_model(lambda a, b: a, (x, x[:, :1]), ignore_dim=2)
    with pytest.raises(ValueError, match="ignore_dim must be None or an int >= 0"):
        apply_model(linear, x, ignore_dim=-1)
    with pytest.raises(ValueError, match="merged rows"):
        apply_model(lambda a: a.sum(0), x, ignore_dim=2)


# -- the image env wrapper -----------------------------------------------------------------------------

def test_torch_image_env_wrapper_seed_contract():
    import gymnasium as gym

    from distwm.utils.utils import TorchImageEnvWrapper

    env = TorchImageEnvWrapper(gym.make("CartPole-v1", render_mode="rgb_array"), 5, observation_shape=(3, 32, 48))
    try:
        obs = env.reset()
        assert obs.shape == (3, 32, 48) and obs.dtype == torch.float32
        assert -0.5 <= float(obs.min()) and float(obs.max()) <= 0.5
        assert env.observation_size == (3, 32, 48) and env.action_size == 2
        assert env.max_episode_steps == 250  # 500 env steps at 2 repeats
        action = env.sample_random_action()
        assert action.dtype == torch.float32 and sorted(action.tolist()) == [0.0, 1.0]
        obs, reward, done, info = env.step(action)
        assert obs.shape == (3, 32, 48) and reward == 2.0 and done is False  # 2 repeated steps
        assert info["terminated"] is False and info["truncated"] is False
        assert env.step(torch.tensor(1))[1] == 2.0  # an action index works too
        assert env.step(np.array([0.2, 0.7]))[1] == 2.0  # scores: the largest is taken
        assert env.render().shape == (32, 48, 3)
        with pytest.raises(ValueError, match="an index in \\[0, 2\\)"):
            env.step(torch.tensor(5))
    finally:
        env.close()
    with pytest.raises(ValueError, match="observation_shape must be"):
        TorchImageEnvWrapper("CartPole-v1", 5, observation_shape=(1, 64, 64))
    with pytest.raises(ValueError, match="bit depth"):
        TorchImageEnvWrapper("CartPole-v1", 9)


# -- latent maps ---------------------------------------------------------------------------------------

def test_visualize_latent_tsne(tmp_path):
    require_module("sklearn")
    from distwm.utils.utils import visualize_latent_tsne

    rng = np.random.default_rng(0)
    latents = np.concatenate([rng.normal(0, 0.1, (15, 6)), rng.normal(5, 0.1, (15, 6))])
    labels = np.array([0] * 15 + [1] * 15)
    points = visualize_latent_tsne(torch.from_numpy(latents), labels, tmp_path / "tsne.png", perplexity=5)
    assert points.shape == (30, 2) and os.path.getsize(tmp_path / "tsne.png") > 0
    centres = [points[labels == k].mean(0) for k in (0, 1)]
    spread = max(points[labels == k].std(0).max() for k in (0, 1))
    assert np.linalg.norm(centres[0] - centres[1]) > 3 * spread  # the two clusters stay apart
    with pytest.raises(ValueError, match="perplexity must be in \\(0, N=30\\)"):
        visualize_latent_tsne(latents, perplexity=30)
    with pytest.raises(ValueError, match="'html' is not supported"):
        visualize_latent_tsne(latents, save_path=tmp_path / "tsne.html", perplexity=5)
    with pytest.raises(ValueError, match="3 labels for 30 latents"):
        visualize_latent_tsne(latents, labels=[0, 1, 2], perplexity=5)


def test_visualize_latent_umap_without_umap_says_how_to_install(monkeypatch):
    from distwm.utils.utils import visualize_latent_umap

    monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
    with pytest.raises(ImportError, match=r"pip install 'distwm\[umap\]'"):
        visualize_latent_umap(np.zeros((10, 3)))


# -- data_utils ----------------------------------------------------------------------------------------

def test_create_efficient_dataloader_options():
    from torch.utils.data import TensorDataset

    from distwm.utils.data_utils import create_efficient_dataloader, default_num_workers

    dataset = TensorDataset(torch.arange(10))
    loader = create_efficient_dataloader(dataset, 4, num_workers=0)
    assert loader.num_workers == 0 and loader.prefetch_factor is None and not loader.persistent_workers
    assert loader.pin_memory == torch.cuda.is_available()
    batches = [b[0] for b in loader]
    assert [len(b) for b in batches] == [4, 4]  # full batches only
    assert len(set(torch.cat(batches).tolist())) == 8
    threaded = create_efficient_dataloader(dataset, 4, num_workers=2, prefetch_factor=3)
    assert threaded.prefetch_factor == 3 and threaded.persistent_workers
    assert create_efficient_dataloader(dataset, 2).num_workers == default_num_workers()
    assert 0 <= default_num_workers() <= 8
    with pytest.raises(ValueError, match="fewer than batch_size=11"):
        create_efficient_dataloader(dataset, 11)
    with pytest.raises(ValueError, match="num_workers must be an int >= 0"):
        create_efficient_dataloader(dataset, 2, num_workers=-1)


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "distwm-prefetch" and t.is_alive()]


def test_prefetch_iterator_order_errors_and_early_stop():
    import itertools

    from distwm.utils.data_utils import prefetch_iterator

    assert list(prefetch_iterator(range(20), buffer_size=2)) == list(range(20))

    def failing():
        yield 1
        yield 2
        raise KeyError("producer broke")

    seen = []
    with pytest.raises(KeyError, match="producer broke"):
        for item in prefetch_iterator(failing()):
            seen.append(item)
    assert seen == [1, 2]
    before = len(_prefetch_threads())
    stream = prefetch_iterator(itertools.count(), buffer_size=3)
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()
    assert len(_prefetch_threads()) == before  # the producer of an endless iterator stopped
    with pytest.raises(ValueError, match="buffer_size must be an int >= 1"):
        next(prefetch_iterator(range(3), buffer_size=0))


# -- jit_utils -----------------------------------------------------------------------------------------

def _square_plus_one(x):
    return x * x + 1


def test_jit_falls_back_when_torch_compile_raises(monkeypatch):
    from distwm.utils.jit_utils import jit_compile_function, jit_compile_module

    def broken_compile(*args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="Dynamo is not supported"):
        compiled = jit_compile_function(_square_plus_one)
    assert compiled is _square_plus_one
    module = nn.Linear(3, 2)
    with pytest.warns(RuntimeWarning, match="running it eagerly"):
        assert jit_compile_module(module) is module
    assert "forward" not in module.__dict__


def test_jit_falls_back_when_the_first_compiled_call_fails(monkeypatch):
    from distwm.utils.jit_utils import CompiledWithFallback, jit_compile_function, jit_compile_module

    calls = []

    def compile_that_fails_at_call(func, *args, **kwargs):
        def compiled(*a, **k):
            calls.append(1)
            raise RuntimeError("inductor: no working C++ compiler found")
        return compiled

    monkeypatch.setattr(torch, "compile", compile_that_fails_at_call)
    compiled = jit_compile_function(_square_plus_one)
    assert isinstance(compiled, CompiledWithFallback) and not compiled.eager
    with pytest.warns(RuntimeWarning, match="no working C\\+\\+ compiler"):
        assert torch.equal(compiled(torch.tensor([2.0])), torch.tensor([5.0]))
    assert compiled.eager and len(calls) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(compiled(torch.tensor([3.0])), torch.tensor([10.0]))
    assert len(calls) == 1  # later calls run eagerly, without trying the compiled code

    module = nn.Linear(3, 2)
    keys = list(module.state_dict())
    x = torch.randn(4, 3)
    expected = module(x)
    assert jit_compile_module(module) is module and isinstance(module.forward, CompiledWithFallback)
    with pytest.warns(RuntimeWarning, match="compiled call failed"):
        assert torch.allclose(module(x), expected)
    assert list(module.state_dict()) == keys  # no _orig_mod. prefix
    clone = pickle.loads(pickle.dumps(module))  # a copy compiles again (and falls back again)
    assert isinstance(clone.forward, CompiledWithFallback) and not clone.forward.eager
    with pytest.warns(RuntimeWarning, match="compiled call failed"):
        assert torch.allclose(clone(x), expected)


def test_jit_keeps_the_callers_own_errors(monkeypatch):
    from distwm.utils.jit_utils import jit_compile_function

    monkeypatch.setattr(torch, "compile", lambda func, *a, **k: func)

    def needs_two_dims(x):
        if x.dim() != 2:
            raise ValueError(f"needs 2 dims, got {x.dim()}")
        return x.t()

    compiled = jit_compile_function(needs_two_dims)
    with pytest.raises(ValueError, match="needs 2 dims"):
        compiled(torch.zeros(3))
    assert not compiled.eager  # a bad input is not a compile failure
    assert compiled(torch.zeros(2, 3)).shape == (3, 2)


def test_jit_compiles_with_dynamo(monkeypatch):
    from distwm.utils.jit_utils import jit_compile_module

    # the real tracer with the cheap "eager" backend (inductor's code generation is slow on CPU)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    torch._dynamo.reset()
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.randn(5, 3)
    expected = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        jit_compile_module(model)
        assert torch.allclose(model(x), expected)
    assert not model.forward.eager


# -- memory_utils --------------------------------------------------------------------------------------

class _Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.dropout = nn.Dropout(0.3)
        self.calls = 0

    def forward(self, x, scale=1.0):
        self.calls += 1
        return x + scale * self.dropout(torch.tanh(self.linear(x)))


class _Tower(nn.Module):
    def __init__(self, width: int = 6, depth: int = 4):
        super().__init__()
        self.stem = nn.Linear(3, width)
        self.blocks = nn.ModuleList(_Block(width) for _ in range(depth))
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, scale=0.5)
        return self.head(h)


def _output_and_grads(model, x):
    torch.manual_seed(7)
    out = model(x)
    model.zero_grad()
    out.sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_gradient_checkpointing_gives_identical_outputs_and_grads():
    from distwm.utils.memory_utils import apply_gradient_checkpointing, checkpointed_blocks

    plain = _Tower()
    model = copy.deepcopy(plain)
    assert apply_gradient_checkpointing(model, checkpoint_ratio=0.5) is model
    assert checkpointed_blocks(model) == [model.blocks[0], model.blocks[2]]  # every other block
    x = torch.randn(8, 3, requires_grad=True)
    out_plain, grads_plain = _output_and_grads(plain, x)
    for block in model.blocks:
        block.calls = 0
    out, grads = _output_and_grads(model, x)
    assert torch.equal(out, out_plain)
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads[name], grad, rtol=0, atol=1e-7, msg=name)
    assert [b.calls for b in model.blocks] == [2, 1, 2, 1]  # recomputed in the backward pass
    assert list(model.state_dict()) == list(plain.state_dict())
    clone = copy.deepcopy(model)
    assert len(checkpointed_blocks(clone)) == 2 and torch.equal(_output_and_grads(clone, x)[0], out)
    assert len(checkpointed_blocks(pickle.loads(pickle.dumps(model)))) == 2
    assert len(checkpointed_blocks(apply_gradient_checkpointing(model, 1.0))) == 4
    assert checkpointed_blocks(apply_gradient_checkpointing(model, 0)) == []
    with pytest.raises(ValueError, match="checkpoint_ratio must be a number in \\[0, 1\\]"):
        apply_gradient_checkpointing(model, 1.5)
    with pytest.warns(UserWarning, match="nothing is checkpointed"):
        apply_gradient_checkpointing(nn.Linear(2, 2))


def test_enable_mixed_precision_on_cpu():
    from distwm.utils.memory_utils import apply_gradient_checkpointing, checkpointed_blocks, enable_mixed_precision

    model = _Tower()
    x = torch.randn(4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU without native bf16 says so
        scaler = enable_mixed_precision(model)
    assert isinstance(scaler, torch.amp.GradScaler) and not scaler.is_enabled()  # bf16 needs no scaling
    out = model(x)
    assert out.dtype == torch.bfloat16
    loss = scaler.scale(out.float().sum())
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    apply_gradient_checkpointing(model, 0.5)  # the two wrappers combine
    assert len(checkpointed_blocks(model)) == 2 and model(x).dtype == torch.bfloat16
    mine = torch.amp.GradScaler("cpu", enabled=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert enable_mixed_precision(model, mine) is mine
    assert model(x).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="valid device types: \\['cpu', 'cuda'\\]"):
        enable_mixed_precision(nn.Linear(2, 2, device="meta"))


def test_optimize_memory_efficient_ops():
    from distwm.utils.memory_utils import optimize_memory_efficient_ops

    before = torch.backends.cuda.matmul.fp32_precision
    applied = optimize_memory_efficient_ops()
    if torch.cuda.is_available():
        assert applied["flash_sdp"] and torch.backends.cuda.flash_sdp_enabled()
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    else:
        assert applied == {} and torch.backends.cuda.matmul.fp32_precision == before
