"""``distwm collect``: Ray collector actors write whole pixel episodes to sharded HDF5 files
and the driver a manifest the datasets read (distwm.runtime.collect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from distwm.configs.rl_config import RLConfig
from distwm.configs.runtime_config import RunConfig, RuntimeConfig
from distwm.datasets.video_shards import ClipDataset, read_manifest
from distwm.runtime.collect import (collect, collect_run_config, format_collect_progress,
                                    check_out, probe_collection, resolve_policy)
from distwm.runtime.collect_worker import env_seeds, load_policy, split_evenly

ENV = "minatar:seaquest"
SETS = ["image_size=16"]
MAX_STEPS = 10  # random MinAtar Seaquest episodes run 4-160 steps: some end, most are cut
KWARGS = dict(workers=2, envs_per_worker=2, max_steps=MAX_STEPS, seed=3, steps_per_shard=20,
              overrides=SETS, verbose=False, collect_seconds=0.2, progress_seconds=0.2)
EPISODES = 7  # 4 + 3 over the two workers, 2 + 2 and 2 + 1 over their envs
CLI_ARGS = ["collect", "--env", ENV, "--workers", "2", "--envs-per-worker", "2",
            "--max-steps", str(MAX_STEPS), "--seed", "3", "--steps-per-shard", "20",
            "--set", SETS[0], "--episodes", str(EPISODES)]


def worker_streams(out: Path, manifest: dict) -> dict[str, dict[str, np.ndarray]]:
    """Each worker's stream: its files' arrays concatenated in manifest order."""
    import h5py

    parts: dict[str, list[dict]] = {}
    for shard in manifest["shards"]:
        with h5py.File(out / shard["file"], "r") as f:
            arrays = {k: f[k][:] for k in f}
        assert len(arrays["image"]) == shard["steps"]
        assert int(arrays["is_first"].sum()) == shard["episodes"]
        parts.setdefault(shard["file"].rsplit("-", 1)[0], []).append(arrays)
    return {w: {k: np.concatenate([p[k] for p in ps]) for k in ps[0]} for w, ps in parts.items()}


def episode_bounds(stream: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    starts = np.flatnonzero(stream["is_first"])
    return list(zip(starts, [*starts[1:], len(stream["is_first"])]))


@pytest.fixture(scope="module")
def collected(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("collect") / "data"
    return collect(ENV, str(out), EPISODES, **KWARGS)


def test_the_manifest_counts_the_episodes_and_describes_the_data(collected):
    manifest = read_manifest(collected.out)
    assert manifest == collected.manifest
    assert manifest["episodes"] == EPISODES
    assert manifest["steps"] == sum(s["steps"] for s in manifest["shards"]) > EPISODES
    assert {k: manifest[k] for k in ("env", "backend", "frame_shape", "action_dim", "policy",
                                     "workers", "envs_per_worker", "seed", "max_steps")} == {
        "env": ENV, "backend": "minatar", "frame_shape": [3, 16, 16], "action_dim": 6,
        "policy": "random", "workers": 2, "envs_per_worker": 2, "seed": 3, "max_steps": MAX_STEPS}
    assert manifest["env_config"]["obs_type"] == "pixels"
    files = [s["file"] for s in manifest["shards"]]
    assert {f.rsplit("-", 1)[0] for f in files} == {"worker-000", "worker-001"}
    assert all(s["steps"] <= 20 for s in manifest["shards"])
    assert sorted(os.listdir(collected.out)) == sorted([*files, "manifest.json"])
    assert collected.history and collected.history[-1]["episodes"] == EPISODES


def test_every_stream_is_whole_episodes_in_the_transition_format(collected):
    streams = worker_streams(Path(collected.out), collected.manifest)
    episodes = {}
    truncated = terminated = 0
    for worker, s in streams.items():
        assert s["image"].dtype == np.uint8 and s["image"].shape[1:] == (3, 16, 16)
        assert s["action"].shape[1:] == (6,) and s["reward"].ndim == 1
        assert s["is_first"][0] and s["is_last"][-1]
        bounds = episode_bounds(s)
        episodes[worker] = len(bounds)
        for start, end in bounds:
            last = end - 1
            assert s["is_last"][last] and not s["is_last"][start:last].any()
            assert not s["is_terminal"][start:last].any()
            assert 2 <= end - start <= MAX_STEPS + 1
            truncated += bool(end - start == MAX_STEPS + 1 and not s["is_terminal"][last])
            terminated += bool(s["is_terminal"][last])
            assert not s["action"][start].any() and s["reward"][start] == 0
            inner = s["action"][start + 1:end]
            assert (inner.sum(-1) == 1).all() and set(np.unique(inner)) <= {0.0, 1.0}
            assert s["image"][start:end].any()
        assert not (s["is_terminal"] & ~s["is_last"]).any()
    assert episodes == {"worker-000": 4, "worker-001": 3}
    assert truncated > 0 and terminated > 0, "the episodes do not both end and get cut"
    clips = ClipDataset(collected.out, seq_len=4)
    batch = clips.batch([0, len(clips) - 1])
    assert batch["image"].shape == (2, 4, 3, 16, 16) and batch["image"].dtype == np.uint8


def test_the_same_seed_writes_the_same_frames_and_overwrite_is_refused(collected, tmp_path, capsys):
    from distwm.cli import main

    out = tmp_path / "again"
    assert main([*CLI_ARGS, "--out", str(out)]) == 0
    assert "dataset:" in capsys.readouterr().out
    first, second = (worker_streams(Path(r), read_manifest(r)) for r in (collected.out, out))
    assert first.keys() == second.keys()
    for worker in first:
        for key in first[worker]:
            np.testing.assert_array_equal(first[worker][key], second[worker][key], err_msg=key)
    # the envs have distinct seeds: their first episodes differ
    openings = [s["image"][: end] for s in first.values() for _, end in episode_bounds(s)[:1]]
    assert not np.array_equal(openings[0][:6], openings[1][:6])

    assert main([*CLI_ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err
    assert main([*CLI_ARGS[:-1], "2", "--workers", "1", "--out", str(out), "--overwrite"]) == 0
    manifest = read_manifest(out)
    assert manifest["episodes"] == 2 and manifest["workers"] == 1
    assert not any(f.startswith("worker-001") for f in os.listdir(out))  # the old files went


def test_an_env_without_pixels_fails_before_any_actor_starts(tmp_path):
    out = tmp_path / "data"
    with pytest.raises(ValueError, match=r"'minatar:seaquest' gives no pixel.*obs_type=pixels"):
        collect(ENV, str(out), 2, overrides=["obs_type=state"], verbose=False)
    assert not out.exists()


def test_bad_options_are_named(tmp_path):
    with pytest.raises(ValueError, match="--episodes"):
        collect(ENV, str(tmp_path / "d"), 0)
    with pytest.raises(ValueError, match="--env is required"):
        collect_run_config(None)
    with pytest.raises(ValueError, match="'nowhere'.*run directory"):
        resolve_policy("nowhere")
    with pytest.raises(ValueError, match="image_sise"):
        collect_run_config(ENV, overrides=["image_sise=16"])
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "worker-000-00000.h5.partial").write_bytes(b"")
    (tmp_path / "stale" / "notes.txt").write_text("not ours")
    with pytest.raises(ValueError, match="unfinished collection.*--overwrite"):
        check_out(str(tmp_path / "stale"))
    assert check_out(str(tmp_path / "stale"), overwrite=True) == (
        str(tmp_path / "stale"), ["worker-000-00000.h5.partial"])


def test_fair_split_seeds_and_progress_line():
    assert split_evenly(7, 2) == [4, 3] and split_evenly(2, 3) == [1, 1, 0]
    seeds = env_seeds(0, 0, 3) + env_seeds(0, 1, 3) + env_seeds(1, 0, 3)
    assert len(set(seeds)) == 9 and env_seeds(0, 1, 3) == env_seeds(0, 1, 3)
    line = format_collect_progress({"episodes": 3, "episodes_total": 12, "env_steps": 1500,
                                    "env_steps_per_s": 250.0, "workers": 2, "workers_running": 2,
                                    "episode_return": 1.5, "eta_seconds": 75})
    assert "3/12 episodes" in line and "250.0 steps/s" in line and "ETA 01:15" in line


def test_the_driver_side_imports_no_torch(tmp_path):
    code = ("import sys; from distwm.cli import build_parser; build_parser()\n"
            "from distwm.runtime.collect import collect_run_config, probe_collection, check_out\n"
            f"run, _ = collect_run_config({ENV!r}, overrides={SETS!r})\n"
            "probe_collection(run, 0, 5); check_out(sys.argv[1])\n"
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- a checkpointed policy ---------------------------------------------------------------------

@dataclass
class FrameAgentConfig(RLConfig):
    AGENT_CLASS: ClassVar[str] = "test_collect:FrameAgent"
    env: str = "square"


class FrameAgent:
    """Scores each action by a linear map of the frame's column means: fresh (zero) weights
    always pick action 0; the saved ones pick action 1 (the square moves right)."""

    def __init__(self, width: int, num_actions: int):
        import torch

        self.weight = torch.zeros(width, num_actions)
        self.loaded = False

    @classmethod
    def from_config(cls, config, observation_space, action_space, device="cpu"):
        return cls(observation_space["image"].shape[-1], action_space.shape[0])

    def initial_state(self, num_envs):
        return None

    def act(self, obs, state, explore):
        import torch

        if explore is not True:
            raise ValueError(f"collect must act with explore=True, got {explore!r}")
        columns = torch.as_tensor(obs["image"], dtype=torch.float32).mean(dim=(1, 2))
        index = (columns @ self.weight).argmax(-1).numpy()
        return np.eye(self.weight.shape[1], dtype=np.float32)[index], state

    def state_dict(self):
        return {"weight": self.weight.clone()}

    def load_state_dict(self, state):
        self.weight = state["weight"].clone()
        self.loaded = True


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as ``distwm train`` leaves it: run.yaml and a learner checkpoint."""
    import torch

    from distwm.runtime.checkpoints import write_checkpoint
    from distwm.utils import storage

    path = tmp_path_factory.mktemp("run") / "run"
    run = RunConfig(model="test_collect:FrameAgentConfig",
                    runtime=RuntimeConfig(env_factory="runtime_agent:make_square_env"))
    storage.write_text(str(path / "run.yaml"), run.to_yaml())
    weight = torch.zeros(64, 2)
    weight[:, 1] = 1.0
    write_checkpoint(str(path), "ckpt-000000001", {"agent": {"weight": weight}, "updates": 1,
                                                   "version": 1})
    return path


def test_a_checkpoint_is_resolved_and_loaded(run_dir):
    checkpoint = str(run_dir / "checkpoints" / "ckpt-000000001")
    assert resolve_policy(str(run_dir)) == (str(run_dir), checkpoint)
    assert resolve_policy(checkpoint) == (str(run_dir), checkpoint)
    run, found = collect_run_config(None, str(run_dir))
    assert found == checkpoint and run.model == "test_collect:FrameAgentConfig"
    meta = probe_collection(run, 0, None)
    assert meta["frame_shape"] == [3, 64, 64] and meta["action_dim"] == 2 and meta["backend"] is None
    from runtime_agent import SquareEnv

    env = SquareEnv()
    agent = load_policy(run, checkpoint, env.observation_space, env.action_space)
    assert agent.loaded and float(agent.weight[:, 1].sum()) == 64.0


def test_a_checkpointed_policy_collects_with_its_weights(ray_session, run_dir, tmp_path):
    result = collect(None, str(tmp_path / "data"), 2, workers=1, policy=str(run_dir),
                     verbose=False, collect_seconds=0.2)
    manifest = result.manifest
    assert manifest["policy"] == str(run_dir / "checkpoints" / "ckpt-000000001")
    assert manifest["env"] == "square" and manifest["frame_shape"] == [3, 64, 64]
    assert manifest["episodes"] == 2 and manifest["steps"] == 2 * 31  # SquareEnv: 30 steps
    stream = worker_streams(Path(result.out), manifest)["worker-000"]
    moved = stream["action"][~stream["is_first"]]
    assert (moved.argmax(-1) == 1).all(), "the actions are not the checkpoint's (always right)"
    assert json.loads((Path(result.out) / "manifest.json").read_text())["workers"] == 1
