"""DreamerOperator: images and actions in every accepted form, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from distwm.inference.operators.dreamer_operator import DreamerOperator


def test_images_of_every_layout_end_up_chw_in_range():
    op = DreamerOperator(image_size=16, action_dim=3)
    hwc = np.full((32, 32, 3), 255, np.uint8)
    for image in (hwc, Image.fromarray(hwc), torch.from_numpy(hwc).permute(2, 0, 1),
                  np.stack([hwc, hwc]), np.ones((16, 16), np.float32)):
        out = op({"image": image})["image"]
        assert out.dim() == 4 and out.shape[-2:] == (16, 16) and out.dtype == torch.float32
        torch.testing.assert_close(out, torch.full_like(out, 0.5))
    assert op({"image": hwc})["image"].shape == (1, 3, 16, 16)
    assert op({"image": np.stack([hwc, hwc])})["image"].shape == (2, 3, 16, 16)


def test_actions_indices_vectors_and_state():
    op = DreamerOperator(image_size=8, action_dim=3)
    image = np.zeros((8, 8, 3), np.uint8)
    assert op({"image": image, "action": 2})["action"].tolist() == [[0.0, 0.0, 1.0]]
    assert op({"image": image, "action": [1, 0]})["action"].shape == (2, 3)
    assert op({"image": image, "action": [0.5, -0.5, 1.0]})["action"].shape == (1, 3)
    assert op({"image": image, "state": [1.0, 2.0]})["state"].shape == (1, 2)


def test_errors_name_the_problem():
    op = DreamerOperator(image_size=8, action_dim=3)
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="'image' key"):
        op({"action": 1})
    with pytest.raises(ValueError, match="not in"):
        op({"image": image, "action": 5})
    with pytest.raises(ValueError, match="action_dim=3"):
        op({"image": image, "action": [0.1, 0.2]})
    with pytest.raises(ValueError, match="image"):
        op({"image": np.zeros(5)})
    with pytest.raises(ValueError, match="image_size"):
        DreamerOperator(image_size=0)
