"""Wrapper semantics: time limits truncate, action repeat sums, action spaces standardise."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from distwm.envs.wrappers import (
    UUID,
    ActionRepeat,
    NormalizeActions,
    ObsDict,
    OneHotAction,
    OneHotBox,
    RenderImage,
    ResizeImage,
    RewardObs,
    SelectAction,
    TimeLimit,
    standardize_actions,
)


class CounterEnv(gymnasium.Env):
    """Reward t at step t; terminates after ``terminate_at`` steps; records the actions it got."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, terminate_at=None, action_space=None, render_mode=None):
        self.terminate_at = terminate_at
        self.action_space = action_space or gymnasium.spaces.Box(-2.0, 4.0, (2,), np.float32)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.render_mode = render_mode
        self.t = 0
        self.actions = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {"reset": True}

    def step(self, action):
        self.actions.append(action)
        self.t += 1
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        return np.array([self.t], np.float32), float(self.t), terminated, False, {}

    def render(self):
        frame = np.zeros((20, 30, 3), np.uint8)
        frame[:, :, 0] = self.t
        return frame


def dict_env(**kwargs):
    return ObsDict(CounterEnv(**kwargs), key="state")


def test_time_limit_truncates_and_never_terminates():
    env = TimeLimit(CounterEnv(), 3)
    env.reset()
    flags = [env.step(np.zeros(2, np.float32))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, np.float32))
    env.reset()
    assert env.step(np.zeros(2, np.float32))[2:4] == (False, False)


def test_time_limit_adds_discount_at_the_cut_and_keeps_termination():
    env = TimeLimit(CounterEnv(), 2)
    env.reset()
    env.step(np.zeros(2, np.float32))
    *_, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert (terminated, truncated, info["discount"]) == (False, True, 1.0)
    env = TimeLimit(CounterEnv(terminate_at=2), 2)
    env.reset()
    env.step(np.zeros(2, np.float32))
    *_, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert terminated and "discount" not in info


@pytest.mark.parametrize("duration", [0, -1, 2.5])
def test_time_limit_rejects_bad_duration(duration):
    with pytest.raises(ValueError, match="duration"):
        TimeLimit(CounterEnv(), duration)


def test_action_repeat_sums_rewards_and_repeats_the_action():
    inner = CounterEnv()
    env = ActionRepeat(inner, 3)
    env.reset()
    obs, reward, terminated, truncated, _ = env.step(np.ones(2, np.float32))
    assert reward == 1 + 2 + 3
    assert obs[0] == 3 and len(inner.actions) == 3
    assert not terminated and not truncated


def test_action_repeat_stops_at_episode_end():
    inner = CounterEnv(terminate_at=2)
    env = ActionRepeat(inner, 4)
    env.reset()
    _, reward, terminated, _, _ = env.step(np.ones(2, np.float32))
    assert terminated and reward == 1 + 2 and len(inner.actions) == 2


def test_action_repeat_stops_at_truncation():
    inner = CounterEnv()
    env = ActionRepeat(TimeLimit(inner, 2), 5)
    env.reset()
    _, reward, terminated, truncated, _ = env.step(np.ones(2, np.float32))
    assert (terminated, truncated, reward, len(inner.actions)) == (False, True, 3.0, 2)


@pytest.mark.parametrize("amount", [0, 1.5])
def test_action_repeat_rejects_bad_amount(amount):
    with pytest.raises(ValueError, match="amount"):
        ActionRepeat(CounterEnv(), amount)


def test_normalize_actions_maps_unit_box_onto_bounds_and_clips():
    inner = CounterEnv()
    env = NormalizeActions(inner)
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
    env.reset()
    env.step(np.array([-1.0, 1.0], np.float32))
    env.step(np.array([0.0, 5.0], np.float32))  # out of range: clipped to 1 -> high
    np.testing.assert_allclose(inner.actions[0], [-2.0, 4.0])
    np.testing.assert_allclose(inner.actions[1], [1.0, 4.0])
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.float32))


def test_normalize_actions_passes_unbounded_dimensions_through():
    space = gymnasium.spaces.Box(np.array([0.0, -np.inf], np.float32), np.array([10.0, np.inf], np.float32))
    inner = CounterEnv(action_space=space)
    env = NormalizeActions(inner)
    np.testing.assert_array_equal(env.action_space.low, [-1.0, -np.inf])
    env.reset()
    env.step(np.array([0.0, 7.5], np.float32))
    np.testing.assert_allclose(inner.actions[0], [5.0, 7.5])


def test_normalize_actions_needs_a_box():
    with pytest.raises(ValueError, match="Box"):
        NormalizeActions(CounterEnv(action_space=gymnasium.spaces.Discrete(3)))


def test_one_hot_action_forwards_the_index_and_validates():
    inner = CounterEnv(action_space=gymnasium.spaces.Discrete(3, start=1))
    env = OneHotAction(inner)
    assert isinstance(env.action_space, OneHotBox) and env.action_space.shape == (3,)
    env.reset()
    env.step(np.array([0, 0, 1], np.float32))
    assert inner.actions == [3]
    with pytest.raises(ValueError, match="one-hot"):
        env.step(np.array([0.5, 0.5, 0.0], np.float32))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.array([1.0, 0.0], np.float32))


def test_one_hot_box_samples_one_hot_vectors():
    space = OneHotBox(5, seed=0)
    samples = np.stack([space.sample() for _ in range(50)])
    assert samples.dtype == np.float32
    np.testing.assert_array_equal(samples.sum(axis=1), np.ones(50))
    assert all(space.contains(s) for s in samples)
    assert not space.contains(np.full(5, 0.2, np.float32))


def test_standardize_actions_picks_the_wrapper():
    assert isinstance(standardize_actions(CounterEnv(action_space=gymnasium.spaces.Discrete(4))), OneHotAction)
    assert isinstance(standardize_actions(CounterEnv()), NormalizeActions)
    unit = CounterEnv(action_space=gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32))
    assert standardize_actions(unit) is unit
    with pytest.raises(ValueError, match="Unsupported action space"):
        standardize_actions(CounterEnv(action_space=gymnasium.spaces.MultiBinary(3)))


def test_obs_dict_and_reward_obs():
    env = RewardObs(dict_env())
    assert set(env.observation_space.spaces) == {"state", "reward"}
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs["reward"], [0.0])
    obs, reward, *_ = env.step(np.zeros(2, np.float32))
    assert obs["reward"].dtype == np.float32 and obs["reward"][0] == reward == 1.0
    assert obs["state"][0] == 1.0
    with pytest.raises(ValueError, match="ObsDict"):
        RewardObs(CounterEnv())


def test_render_image_and_resize_image():
    env = RenderImage(dict_env(render_mode="rgb_array"), key="image", size=(8, 12))
    assert env.observation_space["image"].shape == (3, 8, 12)
    env.reset()
    obs, *_ = env.step(np.zeros(2, np.float32))
    assert obs["image"].shape == (3, 8, 12) and obs["image"].dtype == np.uint8
    assert np.all(obs["image"][0] == 1)  # the frame rendered after step 1
    resized = ResizeImage(env, size=4)
    assert resized.obs_space["image"].shape == (3, 4, 4)
    obs, _ = resized.reset()
    assert obs["image"].shape == (3, 4, 4) and obs["state"].shape == (1,)
    with pytest.raises(ValueError, match="rgb_array"):
        RenderImage(dict_env(render_mode=None))


def test_uuid_gives_each_episode_a_new_id():
    env = UUID(CounterEnv())
    _, info1 = env.reset()
    first = env.id
    _, info2 = env.reset()
    assert info1["uuid"] == first and info2["uuid"] == env.id and first != env.id


def test_select_action_forwards_one_key():
    inner = CounterEnv()
    env = SelectAction(inner, "move")
    env.reset()
    env.step({"move": np.ones(2, np.float32), "say": "hi"})
    np.testing.assert_array_equal(inner.actions[0], [1.0, 1.0])
    with pytest.raises(ValueError, match="move"):
        env.step(np.ones(2, np.float32))
