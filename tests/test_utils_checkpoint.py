"""The one checkpoint format (distwm.utils.checkpoint): building, checking, saving, loading."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from distwm.utils.checkpoint import (agent_state, check_state, checkpoint_format, cpu_state, load_file,
                                     make_state, save_file)

FORMAT = checkpoint_format("toy", 2)
ARCH = {"width": 8, "obs_shape": [3]}


def test_format_and_state_layout():
    assert FORMAT == "distwm.toy/2"
    state = make_state(FORMAT, ARCH, net={"w": torch.ones(2)}, updates=3)
    assert state["format"] == FORMAT and state["architecture"] == ARCH and state["updates"] == 3
    assert state["architecture"] is not ARCH
    with pytest.raises(ValueError, match="version >= 1"):
        checkpoint_format("toy", 0)
    net = torch.nn.Linear(2, 2)
    assert all(v.device.type == "cpu" and not v.requires_grad for v in cpu_state(net.state_dict()).values())


def test_check_state_names_the_format_the_missing_keys_and_every_mismatch():
    state = make_state(FORMAT, ARCH, net={})
    check_state(state, FORMAT, ARCH, "Toy", required=("net",))
    with pytest.raises(ValueError, match=r"not a Toy checkpoint \(format 'distwm.other/1', expected 'distwm.toy/2'\)"):
        check_state({**state, "format": "distwm.other/1"}, FORMAT, ARCH, "Toy")
    with pytest.raises(ValueError, match=r"missing \['format', 'net'\]"):
        check_state({"architecture": ARCH}, FORMAT, ARCH, "Toy", required=("net",))
    with pytest.raises(ValueError, match="not a Toy state dict: got list"):
        check_state([], FORMAT, ARCH, "Toy")
    with pytest.raises(ValueError) as info:
        check_state(state, FORMAT, {"width": 16, "obs_shape": [4]}, "Toy")
    message = str(info.value)
    assert "does not match this agent's architecture" in message
    assert "width: checkpoint 8 vs agent 16" in message and "obs_shape: checkpoint [3] vs agent [4]" in message
    assert "the checkpoint has width=8, obs_shape=[3] but this Toy has width=16, obs_shape=[4]" in message


def test_save_and_load_files(tmp_path):
    state = make_state(FORMAT, ARCH, net={"w": torch.arange(3.0)})
    path = save_file(state, tmp_path / "sub" / "ckpt.pt")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["ckpt.pt"]  # no temporary left
    loaded = load_file(path, FORMAT, "Toy")
    assert torch.equal(loaded["net"]["w"], torch.arange(3.0))
    wrapper = save_file({"agent": state, "epoch": 4}, tmp_path / "wrapped.pt")
    loaded = load_file(wrapper, FORMAT, "Toy")
    assert loaded["epoch"] == 4 and agent_state(loaded)["format"] == FORMAT
    assert agent_state(state) is state

    with pytest.raises(FileNotFoundError, match="Toy checkpoint .*missing.pt.* does not exist"):
        load_file(tmp_path / "missing.pt", FORMAT, "Toy")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(open(path, "rb").read()[:100])
    with pytest.raises(ValueError, match="corrupt.pt.* is corrupt or not a torch checkpoint"):
        load_file(corrupt, FORMAT, "Toy")
    with pytest.raises(ValueError, match=r"is not a Toy checkpoint \(format 'distwm.toy/2', expected 'distwm.toy/1'"):
        load_file(path, "distwm.toy/1", "Toy")
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": FORMAT, "fn": object()}, pickled)
    with pytest.raises(ValueError, match="corrupt or not a torch checkpoint") as info:  # weights_only refuses it
        load_file(pickled, FORMAT, "Toy")
    message = str(info.value)  # names the file, says what to do, never to load it unsafely
    assert "pickled.pt" in message and "never loads" in message and "delete it" in message
    assert "weights_only" not in message and "trust" not in message


def test_the_module_does_not_import_torch():
    code = "import sys, distwm.utils, distwm.utils.checkpoint; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
