"""Shared helpers of the Dreamer tests: tiny configs and synthetic replay batches."""

from __future__ import annotations

import numpy as np

from distwm.configs.dreamer_config import DreamerConfig

OBS_CASES = {
    "vector": {"state": (5,)},
    "image": {"image": (3, 16, 16)},
    "mixed": {"image": (3, 16, 16), "state": (5,)},
}


def tiny_config(version: str = "v3", **overrides) -> DreamerConfig:
    base = dict(version=version, model_size="tiny", imagine_horizon=3, batch_size=2,
                train_seq_len=6, cnn_depth=4)
    if version == "v1":
        base.update(deter_size=16, stoch_size=4, num_units=16, num_layers=1)
    if version == "v2":
        base.update(deter_size=16, stoch_size=4, stoch_classes=4, num_units=16, num_layers=1)
    base.update(overrides)
    return DreamerConfig(**base)


def random_batch(shapes, action_size: int, discrete: bool, batch: int = 2, steps: int = 6,
                 seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    if "image" in shapes:
        out["image"] = rng.integers(0, 256, (batch, steps, *shapes["image"]), dtype=np.uint8)
    if "state" in shapes:
        out["state"] = rng.normal(size=(batch, steps, *shapes["state"])).astype(np.float32)
    if discrete:
        out["action"] = np.eye(action_size, dtype=np.float32)[rng.integers(0, action_size, (batch, steps))]
    else:
        out["action"] = rng.uniform(-1, 1, (batch, steps, action_size)).astype(np.float32)
    out["reward"] = rng.normal(size=(batch, steps)).astype(np.float32)
    out["is_first"] = np.zeros((batch, steps), bool)
    out["is_first"][:, 0] = True
    out["action"][out["is_first"]] = 0.0
    out["is_terminal"] = np.zeros((batch, steps), bool)
    out["is_terminal"][0, -1] = True
    out["is_last"] = out["is_terminal"].copy()
    return out


def observation(shapes, num: int, seed: int = 0, first: bool = True) -> dict[str, np.ndarray]:
    batch = random_batch(shapes, 2, True, batch=num, steps=1, seed=seed)
    obs = {k: batch[k][:, 0] for k in shapes}
    obs["is_first"] = np.full(num, first)
    return obs
