"""A checkpoint of the V3 preset written by distwm before the issue-12 changes (commit 9ca30ce^:
before action scaling, the baseline objective, the reference init, v3-2024 and the speed
switches) still loads and acts exactly as it did then. ``tests/fixtures/dreamer_v3_tiny.json``
holds the actions the writing code computed (``torch.manual_seed(123)`` before acting)."""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from distwm.configs.dreamer_config import DreamerConfig
from distwm.models.dreamer import DreamerCore

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def test_a_v3_checkpoint_from_before_loads_acts_as_then_and_trains_on():
    cfg = DreamerConfig(version="v3", model_size="tiny", batch_size=2, train_seq_len=6, imagine_horizon=3)
    torch.manual_seed(0)
    core = DreamerCore(cfg, {"state": (5,)}, 2, discrete=False)
    core.restore_checkpoint(os.path.join(FIXTURES, "dreamer_v3_tiny.pt"))
    expected = json.load(open(os.path.join(FIXTURES, "dreamer_v3_tiny.json")))
    rng = np.random.default_rng(0)
    torch.manual_seed(123)
    first = {"state": rng.normal(size=(3, 5)).astype(np.float32), "is_first": np.ones(3, bool)}
    actions, state = core.act(first, None, explore=False)
    later = {"state": rng.normal(size=(3, 5)).astype(np.float32), "is_first": np.zeros(3, bool)}
    next_actions, _ = core.act(later, state, explore=False)
    np.testing.assert_allclose(actions, expected["actions"], atol=1e-6)
    np.testing.assert_allclose(next_actions, expected["next_actions"], atol=1e-6)
    # and it trains on from there
    from dreamer_helpers import random_batch

    before = {k: v.clone() for k, v in core.world_model.state_dict().items()}
    metrics = core.update({"sequences": random_batch({"state": (5,)}, 2, False, batch=2, steps=6)})
    assert metrics["skipped"] == 0.0
    assert any(not torch.equal(before[k], v) for k, v in core.world_model.state_dict().items())
