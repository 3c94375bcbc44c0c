"""PlaNetOperator: raw transitions -> batched tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distwm.inference.operators.base import OperatorABC
from distwm.inference.operators.planet_operator import PlaNetOperator


def test_state_transition_is_batched():
    op = PlaNetOperator(state_dim=32, action_dim=2)
    assert isinstance(op, OperatorABC)
    out = op.process({"obs": torch.randn(32), "action": [0.1, 0.2], "reward": 1.0, "done": False})
    assert out["obs"].shape == (1, 32) and out["action"].shape == (1, 2)
    torch.testing.assert_close(out["action"], torch.tensor([[0.1, 0.2]]))
    assert out["reward"].tolist() == [1.0] and out["done"].tolist() == [0.0]
    batch = op({"obs": np.zeros((5, 32)), "done": np.array([True, False, False, False, True])})
    assert batch["obs"].shape == (5, 32) and batch["done"].tolist() == [1, 0, 0, 0, 1]


def test_images_go_to_planet_range_in_chw():
    op = PlaNetOperator()
    hwc = np.full((64, 64, 3), 255, np.uint8)
    out = op.process({"obs": hwc})["obs"]
    assert out.shape == (1, 3, 64, 64) and torch.allclose(out, torch.full_like(out, 0.5))
    chw = torch.zeros(2, 3, 64, 64)
    out = op.process({"obs": chw})["obs"]
    assert out.shape == (2, 3, 64, 64) and torch.allclose(out, torch.full_like(out, -0.5))
    from PIL import Image

    out = op.process({"obs": Image.new("RGB", (32, 16))})["obs"]
    assert out.shape == (1, 3, 16, 32)


@pytest.mark.parametrize("inputs,match", [
    ({"obs": np.zeros(31)}, "state_dim=32"),
    ({"action": [0.0, 1.0]}, "action must have 4 values"),
    ({"observation": 1}, "valid keys: obs, action, reward, done"),
    ({}, "none given"),
])
def test_bad_inputs_are_refused(inputs, match):
    with pytest.raises(ValueError, match=match):
        PlaNetOperator().process(inputs)
    with pytest.raises(ValueError, match="state_dim must be a positive int"):
        PlaNetOperator(state_dim=0)
