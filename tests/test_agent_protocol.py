"""Conformance of every RL family to the agent protocol (:mod:`distwm.agent`).

The cases are every registered model spec of kind ``"rl-agent"`` that names a protocol
class (``spec.protocol_path``): a family joins by registering itself. Each case builds a
tiny config and tiny envs and drives the protocol class the way the runtime does.

A family provides its tiny test config with a ``tiny_test_config(config) -> config``
classmethod on its protocol class (given the spec's default config), or with an entry in
:data:`TINY_OVERRIDES` below (config overrides keyed by spec name).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
import pytest

import distwm
from distwm.agent import Agent, DataSpec, NonFiniteLossError, import_object

import torch
from gymnasium import spaces

from distwm.envs.wrappers import OneHotBox

_DREAMER_TINY = dict(model_size="tiny", imagine_horizon=3, batch_size=2, train_seq_len=6, cnn_depth=4,
                     max_nonfinite_updates=3)
_DREAMER_SMALL = dict(deter_size=16, stoch_size=4, num_units=16, num_layers=1)

#: tiny config overrides per spec name (a family may instead define ``tiny_test_config``)
TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "dreamer": _DREAMER_TINY,
    "dreamer-v3": _DREAMER_TINY,
    "dreamer-v3-2024": {**_DREAMER_TINY, "deter_blocks": 2, "warmup_steps": 0},
    "dreamer-v2": {**_DREAMER_TINY, **_DREAMER_SMALL, "stoch_classes": 4},
    "dreamer-v1": {**_DREAMER_TINY, **_DREAMER_SMALL},
    "planet": dict(state_size=16, latent_size=4, hidden_size=16, embedding_size=16, batch_size=2,
                   train_seq_len=6, planning_horizon=3, num_candidates=16, num_iterations=2,
                   top_candidates=4, max_nonfinite_updates=3),
}


def _rl_specs() -> list:
    seen, out = set(), []
    for name in distwm.list_models():
        spec = distwm.get_model_spec(name)
        key = (spec.protocol_path, spec.config_path)
        if spec.kind != "rl-agent" or spec.protocol_path is None or key in seen:
            continue  # "dreamer" and "dreamer-v3" are one case
        seen.add(key)
        out.append(spec)
    return out


SPECS = _rl_specs()

#: env cases: (observation space, action space)
ENVS = {
    "state-onehot": (spaces.Dict({"state": spaces.Box(-np.inf, np.inf, (4,), np.float32)}), OneHotBox(3)),
    "image-box": (spaces.Dict({"image": spaces.Box(0, 255, (3, 64, 64), np.uint8),
                               "state": spaces.Box(-np.inf, np.inf, (4,), np.float32)}),
                  spaces.Box(-1.0, 1.0, (2,), np.float32)),
    "image-onehot": (spaces.Dict({"image": spaces.Box(0, 255, (3, 64, 64), np.uint8)}), OneHotBox(3)),
}


def _supports(spec, env: str) -> bool:
    """A family that acts only on some spaces says so with ``supports(obs_space, act_space)``
    (IRIS: pixels and discrete actions); the others take the first two cases (the third,
    pixels with discrete actions, is there for the families that need it)."""
    hook = getattr(import_object(spec.protocol_path), "supports", None)
    return env != "image-onehot" if hook is None else bool(hook(*ENVS[env]))


CASES = [pytest.param(spec, env, id=f"{spec.name}-{env}") for spec in SPECS for env in ENVS
         if _supports(spec, env)]
UNSUPPORTED = [pytest.param(spec, env, id=f"{spec.name}-{env}") for spec in SPECS for env in ENVS
               if hasattr(import_object(spec.protocol_path), "supports") and not _supports(spec, env)]


@cache
def _tiny_config(spec):
    cls = import_object(spec.protocol_path)
    hook = getattr(cls, "tiny_test_config", None)
    if hook is not None:
        return hook(distwm.create_config(spec.name))
    if spec.name not in TINY_OVERRIDES:
        pytest.fail(f"{spec.name}: no tiny test config; give {spec.protocol_path} a "
                    "tiny_test_config(config) classmethod or add it to TINY_OVERRIDES")
    return distwm.create_config(spec.name, **TINY_OVERRIDES[spec.name])


def _build(spec, env: str, seed: int = 0):
    torch.manual_seed(seed)
    obs_space, act_space = ENVS[env]
    cls = import_object(spec.protocol_path)
    return cls.from_config(_tiny_config(spec), obs_space, act_space, device="cpu")


def _obs(env: str, num: int, seed: int, first) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for key, space in ENVS[env][0].spaces.items():
        if space.dtype == np.uint8:
            out[key] = rng.integers(0, 256, (num, *space.shape), dtype=np.uint8)
        else:
            out[key] = rng.normal(size=(num, *space.shape)).astype(np.float32)
    out["is_first"] = np.broadcast_to(np.asarray(first, bool), (num,)).copy()
    return out


def _batches(agent, env: str, update_index: int = 0, seed: int = 0, nan: bool = False):
    """``{name: batch}`` for the samples update ``update_index`` carries (random data)."""
    data_spec = agent.data_spec()
    act_space = ENVS[env][1]
    rng = np.random.default_rng(seed)
    out = {}
    for name in data_spec.due(update_index):
        sample = data_spec.sample(name)
        b, t = sample.batch_size, sample.seq_len
        steps = _obs(env, b * t, seed, False)
        batch = {k: v.reshape(b, t, *v.shape[1:]) for k, v in steps.items() if k != "is_first"}
        size = act_space.shape[0]
        if isinstance(act_space, OneHotBox):
            batch["action"] = np.eye(size, dtype=np.float32)[rng.integers(0, size, (b, t))]
        else:
            batch["action"] = rng.uniform(-1, 1, (b, t, size)).astype(np.float32)
        batch["reward"] = rng.normal(size=(b, t)).astype(np.float32)
        batch["is_first"] = np.zeros((b, t), bool)
        batch["is_first"][:, 0] = True
        batch["action"][batch["is_first"]] = 0.0
        batch["is_terminal"] = np.zeros((b, t), bool)
        batch["is_terminal"][0, -1] = True
        batch["is_last"] = batch["is_terminal"].copy()
        if nan:
            batch["reward"][:] = np.nan
            if "state" in batch:
                batch["state"][:] = np.nan
        out[name] = batch
    return out


def _leaves(tree: Any, prefix: str = ""):
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _leaves(value, f"{prefix}/{key}")
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _leaves(value, f"{prefix}/{i}")
    else:
        yield prefix, tree


def _float_tensors(tree) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in _leaves(tree)
            if torch.is_tensor(v) and v.is_floating_point()}


def _act(agent, obs, state, explore: bool, seed: int = 5):
    torch.manual_seed(seed)  # planners sample even when not exploring
    return agent.act(obs, copy.deepcopy(state), explore)


# -- the suite --------------------------------------------------------------------------------

def test_the_rl_families_are_cases():
    protocols = {spec.protocol_path.split(":")[0].split(".")[2] for spec in SPECS}
    assert {"dreamer", "planet"} <= protocols or {"dreamer", "planet_agent"} <= protocols, SPECS
    names = {spec.name for spec in SPECS}
    assert {"dreamer-v1", "dreamer-v2", "planet", "iris"} <= names and names & {"dreamer", "dreamer-v3"}
    assert all(any(p.values[0] is spec for p in CASES) for spec in SPECS), "a family with no env case"


@pytest.mark.parametrize("spec, env", UNSUPPORTED)
def test_unsupported_spaces_raise_a_clear_error(spec, env):
    with pytest.raises(ValueError, match="discrete|pixels|image"):
        _build(spec, env)


@pytest.mark.parametrize("spec, env", CASES)
def test_is_an_agent_with_a_data_spec(spec, env):
    agent = _build(spec, env)
    assert isinstance(agent, Agent)
    data_spec = agent.data_spec()
    assert isinstance(data_spec, DataSpec)
    assert data_spec.due(0) and set(data_spec.due(0)) <= set(data_spec.names)


@pytest.mark.parametrize("spec, env", CASES)
def test_act_returns_bounded_float32_actions(spec, env):
    agent = _build(spec, env)
    space = ENVS[env][1]
    state = agent.initial_state(3)
    for step, explore in enumerate((True, False, True)):
        actions, state = agent.act(_obs(env, 3, step, step == 0), state, explore)
        assert isinstance(actions, np.ndarray) and actions.dtype == np.float32
        assert actions.shape == (3, space.shape[0])
        assert np.all(actions >= space.low - 1e-6) and np.all(actions <= space.high + 1e-6)
        if isinstance(space, OneHotBox):
            assert all(space.contains(a) for a in actions), actions


def _rows(result, row: int) -> dict[str, np.ndarray]:
    """Env ``row`` of an ``act`` result: its action and every state tensor with an env axis."""
    actions, state = result
    out = {"action": np.asarray(actions)[row]}
    for key, value in _leaves(state, "state"):
        if torch.is_tensor(value) and value.ndim >= 1 and value.shape[0] == len(actions):
            out[key] = value[row].detach().cpu().float().numpy()
    return out


def _assert_same_env(a, b, row: int, what: str) -> None:
    mine, theirs = _rows(a, row), _rows(b, row)
    assert set(mine) == set(theirs)
    for key in mine:
        np.testing.assert_allclose(mine[key], theirs[key], atol=1e-5, err_msg=f"{what} ({key})")


@pytest.mark.parametrize("spec, env", CASES)
def test_is_first_resets_only_that_envs_state(spec, env):
    agent = _build(spec, env)
    state = agent.initial_state(2)
    _, state = agent.act(_obs(env, 2, 1, True), state, True)
    _, state = agent.act(_obs(env, 2, 2, False), state, True)
    obs = _obs(env, 2, 3, [True, False])
    reset = _act(agent, obs, state, explore=False)
    fresh = _act(agent, {**obs, "is_first": np.array([True, True])}, agent.initial_state(2), explore=False)
    kept = _act(agent, {**obs, "is_first": np.array([False, False])}, state, explore=False)
    _assert_same_env(reset, fresh, 0, "env 0 was not reset by is_first")
    _assert_same_env(reset, kept, 1, "env 1 changed by env 0's reset")
    with pytest.raises(AssertionError):  # the history mattered: the check above can fail
        _assert_same_env(kept, fresh, 0, "history")


@pytest.mark.parametrize("spec, env", CASES)
def test_weights_are_cpu_and_round_trip(spec, env):
    agent, fresh = _build(spec, env, seed=1), _build(spec, env, seed=2)
    weights = agent.get_weights()
    tensors = [v for _, v in _leaves(weights) if torch.is_tensor(v)]
    assert tensors and all(v.device.type == "cpu" for v in tensors)
    obs = _obs(env, 2, 7, True)
    with pytest.raises(AssertionError):  # two fresh agents act differently before set_weights
        _assert_same_env(_act(agent, obs, agent.initial_state(2), explore=False),
                         _act(fresh, obs, fresh.initial_state(2), explore=False), 0, "")
    fresh.set_weights(weights)
    for row in (0, 1):
        _assert_same_env(_act(agent, obs, agent.initial_state(2), explore=False),
                         _act(fresh, obs, fresh.initial_state(2), explore=False), row,
                         "set_weights(get_weights()) does not act the same")


@pytest.mark.parametrize("spec, env", CASES)
def test_update_takes_named_samples_and_changes_parameters(spec, env):
    agent = _build(spec, env)
    before = _float_tensors(agent.state_dict())
    metrics = agent.update(_batches(agent, env))
    assert isinstance(metrics, Mapping) and all(np.isfinite(float(v)) for v in metrics.values())
    after = _float_tensors(agent.state_dict())
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert changed, "update() changed no parameter tensor"


@pytest.mark.parametrize("spec, env", CASES)
def test_state_dict_saves_loads_and_restores(spec, env):
    agent = _build(spec, env, seed=1)
    agent.update(_batches(agent, env))
    state = agent.state_dict()
    assert {"format", "architecture"} <= set(state), sorted(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    fresh = _build(spec, env, seed=2)
    fresh.load_state_dict(loaded)
    mine, theirs = dict(_leaves(agent.state_dict())), dict(_leaves(fresh.state_dict()))
    assert set(mine) == set(theirs)
    for key, value in mine.items():
        if torch.is_tensor(value):
            assert torch.equal(value, theirs[key]), key
        else:
            assert value == theirs[key], key


@pytest.mark.parametrize("spec, env", CASES)
def test_non_finite_updates_are_skipped_then_raise(spec, env):
    agent = _build(spec, env)
    limit = getattr(_tiny_config(spec), "max_nonfinite_updates", None)
    assert limit is not None, f"{type(_tiny_config(spec)).__name__} has no max_nonfinite_updates"
    for k in range(int(limit) - 1):
        metrics = agent.update(_batches(agent, env, k, nan=True))
        assert metrics.get("skipped") == 1.0, f"update {k} on NaN data did not mark a skip: {metrics}"
    with pytest.raises(NonFiniteLossError):
        agent.update(_batches(agent, env, int(limit) - 1, nan=True))
