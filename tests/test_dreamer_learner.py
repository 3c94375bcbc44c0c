"""Dreamer learner: updates, truncation, non-finite losses, weights and checkpoints."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from dreamer_helpers import OBS_CASES, observation, random_batch, tiny_config
from distwm.agent import Agent, DataSpec
from distwm.models.dreamer import Dreamer, DreamerCore, NonFiniteLossError


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def params(agent) -> dict[str, torch.Tensor]:
    out = {}
    for name, module in agent.modules.items():
        out.update({f"{name}.{k}": v.detach().clone() for k, v in module.state_dict().items()})
    return out


@pytest.mark.parametrize("version, discrete, obs", [
    ("v3", True, "vector"), ("v3", False, "mixed"), ("v2", True, "image"), ("v1", False, "vector"),
])
def test_one_update_changes_parameters_and_reports_finite_metrics(version, discrete, obs):
    shapes = OBS_CASES[obs]
    agent = Dreamer(tiny_config(version), shapes, 2, "cpu", discrete=discrete)
    before = params(agent)
    metrics = agent.update({"sequences": random_batch(shapes, 2, discrete)})
    after = params(agent)
    assert metrics["skipped"] == 0.0 and agent.updates == 1
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    for key in ("model_loss", "reward_loss", "kl_dyn", "kl_rep", "actor_loss", "value_loss"):
        assert key in metrics
    for prefix in ("world_model.encoder", "world_model.rssm", "behavior.actor", "behavior.critic"):
        changed = [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]
        assert changed, f"no parameter of {prefix} changed"


def test_protocol_and_data_spec():
    agent = Dreamer(tiny_config("v3", train_ratio=32.0), OBS_CASES["vector"], 2, "cpu", discrete=True)
    assert isinstance(agent, Agent)
    spec = agent.data_spec()
    assert spec == DataSpec(2, 6, 32.0) and spec.updates_per_env_step == pytest.approx(32 / 12)


def test_truncation_bootstraps_and_termination_does_not():
    shapes = OBS_CASES["vector"]
    agent = Dreamer(tiny_config("v3"), shapes, 2, "cpu", discrete=True)
    batch = random_batch(shapes, 2, True)
    batch["is_terminal"][:] = False
    batch["is_last"][:] = False
    batch["is_last"][0, 2] = True            # time-limit end: not a termination
    batch["is_terminal"][1, 3] = batch["is_last"][1, 3] = True
    data = agent._batch_to_tensors(batch)
    _, post, _ = agent.model_loss(data)
    imag = agent.imagine(post, data["is_terminal"])
    start_cont = imag.cont[0].reshape(2, 6)
    assert start_cont[0, 2] == 1.0 and start_cont[1, 3] == 0.0
    assert torch.all(imag.weight[:, 1 * 6 + 3] == 0.0)  # nothing after a termination counts
    assert torch.all(imag.weight[0].reshape(2, 6)[0] == 1.0)


@pytest.mark.parametrize("imagine_cont, expected", [("prob", 0.7), ("mode", 1.0)])
def test_imagination_discounts_by_the_continue_probability_or_its_mode(imagine_cont, expected):
    shapes = OBS_CASES["vector"]
    agent = Dreamer(tiny_config("v3", imagine_cont=imagine_cont), shapes, 2, "cpu", discrete=True)
    last = [m for m in agent.world_model.cont.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # a continue head that says "continues with probability 0.7" everywhere
        last.weight.zero_()
        last.bias.fill_(float(np.log(0.7 / 0.3)))
    data = agent._batch_to_tensors(random_batch(shapes, 2, True))
    _, post, _ = agent.model_loss(data)
    imag = agent.imagine(post, data["is_terminal"])
    assert torch.allclose(imag.cont[1:], torch.full_like(imag.cont[1:], expected), atol=1e-5)


def test_nonfinite_losses_are_skipped_counted_and_stop_the_run():
    shapes = OBS_CASES["vector"]
    agent = Dreamer(tiny_config("v3", max_nonfinite_updates=3), shapes, 2, "cpu", discrete=True)
    bad = random_batch(shapes, 2, True)
    bad["reward"][0, 1] = np.nan
    before = params(agent)
    metrics = agent.update({"sequences": bad})
    assert metrics["skipped"] == 1.0 and agent.nonfinite_updates == 1 and agent.updates == 0
    assert all(torch.equal(before[k], v) for k, v in params(agent).items())
    agent.update({"sequences": random_batch(shapes, 2, True)})   # a good update resets the streak
    agent.update({"sequences": bad})
    agent.update({"sequences": bad})
    with pytest.raises(NonFiniteLossError, match="3 consecutive updates"):
        agent.update({"sequences": bad})
    assert agent.nonfinite_updates == 4


def test_update_rejects_bad_batches():
    shapes = OBS_CASES["vector"]
    agent = Dreamer(tiny_config("v3"), shapes, 2, "cpu", discrete=True)
    batch = random_batch(shapes, 2, True)
    with pytest.raises(ValueError, match="lacks keys"):
        agent.update({"sequences": {k: v for k, v in batch.items() if k != "reward"}})
    with pytest.raises(ValueError, match="width 3"):
        agent.update({"sequences": {**batch, "action": np.zeros((2, 6, 3), np.float32)}})
    with pytest.raises(ValueError, match="expected"):
        agent.update({"sequences": {**batch, "state": batch["state"][:, :4]}})
    with pytest.raises(ValueError, match="observation keys"):
        agent.act({"is_first": np.ones(1, bool)}, None, True)


def test_from_config_reads_gym_spaces():
    from distwm.envs.wrappers import OneHotBox

    obs = gym.spaces.Dict({"state": gym.spaces.Box(-1, 1, (5,), np.float32),
                           "image": gym.spaces.Box(0, 255, (3, 16, 16), np.uint8)})
    agent = Dreamer.from_config(tiny_config("v3").to_dict(), obs, OneHotBox(4))
    assert agent.discrete and agent.action_size == 4 and set(agent.obs_shapes) == {"image", "state"}
    agent = Dreamer.from_config(tiny_config("v3"), obs, gym.spaces.Box(-1, 1, (2,), np.float32))
    assert not agent.discrete
    with pytest.raises(ValueError, match="action space"):
        Dreamer.from_config(tiny_config("v3"), obs, gym.spaces.MultiBinary(3))
    with pytest.raises(ValueError, match="observation"):
        Dreamer.from_config(tiny_config("v3"), gym.spaces.Discrete(3), OneHotBox(2))


def _greedy_actions(agent, shapes, seed=3):
    torch.manual_seed(seed)
    state, out = None, []
    for t in range(4):
        actions, state = agent.act(observation(shapes, 3, seed=t, first=t == 0), state, explore=False)
        out.append(actions)
    return np.stack(out)


def test_weights_move_the_policy_to_a_cpu_worker():
    shapes = OBS_CASES["image"]
    learner = Dreamer(tiny_config("v3"), shapes, 2, "cpu", discrete=True)
    learner.update({"sequences": random_batch(shapes, 2, True)})
    worker = Dreamer(tiny_config("v3"), shapes, 2, "cpu", discrete=True)
    weights = learner.get_weights()
    assert all(v.device.type == "cpu" for v in weights.values())
    worker.set_weights(weights)
    np.testing.assert_array_equal(_greedy_actions(learner, shapes), _greedy_actions(worker, shapes))
    other = Dreamer(tiny_config("v3", deter_size=8), shapes, 2, "cpu", discrete=True)
    with pytest.raises(ValueError, match="do not fit"):
        other.set_weights(weights)


def test_checkpoint_round_trip_reproduces_actions_and_training_state(tmp_path):
    shapes = OBS_CASES["mixed"]
    agent = Dreamer(tiny_config("v3"), shapes, 2, "cpu", discrete=False)
    agent.update({"sequences": random_batch(shapes, 2, False)})
    agent.env_steps = 1234
    path = agent.save(tmp_path / "ckpt" / "dreamer.pt")
    torch.load(path, weights_only=True)  # loads without pickled code
    restored = Dreamer(tiny_config("v3"), shapes, 2, "cpu", discrete=False)
    restored.restore_checkpoint(path)
    assert (restored.updates, restored.env_steps) == (1, 1234)
    np.testing.assert_array_equal(_greedy_actions(agent, shapes), _greedy_actions(restored, shapes))
    assert restored.model_optimizer.state_dict()["state"].keys() == agent.model_optimizer.state_dict()["state"].keys()
    torch.manual_seed(5)
    m1 = agent.update({"sequences": random_batch(shapes, 2, False, seed=9)})
    torch.manual_seed(5)
    m2 = restored.update({"sequences": random_batch(shapes, 2, False, seed=9)})
    assert m1["model_loss"] == pytest.approx(m2["model_loss"], rel=1e-5)


def test_checkpoint_errors_say_what_is_wrong(tmp_path):
    shapes = OBS_CASES["vector"]
    agent = Dreamer(tiny_config("v3"), shapes, 2, "cpu", discrete=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        agent.restore_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    path = agent.save(tmp_path / "good.pt")
    corrupt.write_bytes(open(path, "rb").read()[:200])
    with pytest.raises(ValueError, match="corrupt"):
        agent.restore_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="not a Dreamer checkpoint"):
        agent.restore_checkpoint(foreign)
    bigger = Dreamer(tiny_config("v3", deter_size=8), shapes, 2, "cpu", discrete=True)
    with pytest.raises(ValueError, match="deter_size: checkpoint 32 vs agent 8"):
        bigger.restore_checkpoint(path)
    other_obs = Dreamer(tiny_config("v3"), {"state": (7,)}, 2, "cpu", discrete=True)
    with pytest.raises(ValueError, match="obs_shapes"):
        other_obs.restore_checkpoint(path)
    with pytest.raises(ValueError, match="restore=True"):
        Dreamer(tiny_config("v3"), shapes, 2, "cpu", restore=True)


def test_seed_env_methods_collect_into_replay_and_evaluate():
    from distwm.models.dreamer import make_env

    cfg = tiny_config("v3", env="CartPole-v1", env_backend="gym", action_repeat=1, buffer_size=500)
    env = make_env(cfg, seed=0)
    agent = Dreamer.from_config(cfg, env.observation_space, env.action_space)
    returns = agent.collect_random_episodes(env, 60)
    assert agent.replay.steps >= 60 and agent.env_steps == 60 and all(r >= 1 for r in returns)
    agent.act_and_collect_data(env, 20)
    assert agent.env_steps == 80
    metrics = agent.train_one_batch()
    assert metrics["skipped"] == 0.0
    result = agent.evaluate(env, 2)
    assert len(result["returns"]) == 2 and result["mean_return"] >= 1
    with pytest.raises(ValueError, match="render_mode"):  # state-only envs have no frames
        agent.evaluate(env, 1, render=True)
    with pytest.raises(ValueError, match="positive int"):
        agent.act_and_collect_data(env, 0)
    env.close()


class _ImageEnv(gym.Env):
    """Five-step episodes of random 16 x 16 images."""

    observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (3, 16, 16), np.uint8)})
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return {"image": self.np_random.integers(0, 256, (3, 16, 16), dtype=np.uint8)}, {}

    def step(self, action):
        self.t += 1
        obs = {"image": self.np_random.integers(0, 256, (3, 16, 16), dtype=np.uint8)}
        return obs, 1.0, False, self.t >= 5, {}


def test_evaluate_records_the_frames_of_the_first_episode():
    env = _ImageEnv()
    agent = Dreamer.from_config(tiny_config("v3"), env.observation_space, env.action_space)
    result = agent.evaluate(env, 2, render=True)
    assert result["returns"] == [5.0, 5.0]
    assert result["frames"].shape == (6, 3, 16, 16) and result["frames"].dtype == np.uint8


def test_update_takes_named_samples_and_imagination_is_passed_not_kept():
    import distwm.agent
    from distwm.configs.dreamer_config import DreamerConfig
    from distwm.agent import import_object

    assert Dreamer is DreamerCore and import_object(DreamerConfig.AGENT_CLASS) is DreamerCore
    assert NonFiniteLossError is distwm.agent.NonFiniteLossError
    shapes = OBS_CASES["vector"]
    agent = Dreamer(tiny_config("v3"), shapes, 2, "cpu", discrete=True)
    batch = random_batch(shapes, 2, True)
    with pytest.raises(ValueError, match=r"samples of data_spec\(\): 'sequences'.*one batch"):
        agent.update(batch)
    with pytest.raises(ValueError, match=r"'sequences'; got \['frames', 'sequences'\]"):
        agent.update({"sequences": batch, "frames": batch})
    data = agent._batch_to_tensors(batch)
    _, post, _ = agent.model_loss(data)
    imag = agent.imagine(post, data["is_terminal"])
    assert not hasattr(agent, "_imagination")
    loss, metrics = agent.actor_loss(imag)
    assert torch.isfinite(loss) and "actor_loss" in metrics
    assert torch.isfinite(agent.value_loss(imag)[0])
    for method in ("actor_loss", "value_loss"):
        with pytest.raises(ValueError, match=rf"{method}\(\) needs the imagination.*imagine\(posterior"):
            getattr(agent, method)()
    with pytest.raises(ValueError, match=r"restore=True.*restore_checkpoint\(path\)"):
        Dreamer(tiny_config("v3"), shapes, 2, "cpu", restore=True)


def test_world_model_loss_takes_the_seeds_time_major_arguments():
    """``world_model_loss(obs, acs, rews, nonterms)`` (the seed's form, time-major, as
    ``ReplayBuffer.sample()`` returns it) is the same loss as ``model_loss`` of the batch."""
    shapes = OBS_CASES["image"]
    agent = Dreamer(tiny_config("v3"), shapes, 2, "cpu", discrete=True)
    batch = random_batch(shapes, 2, True)
    batch["is_first"][:] = False
    batch["is_first"][:, 0] = True
    batch["is_terminal"][:] = False
    batch["is_terminal"][1, 2] = True
    batch["is_first"][1, 3] = True  # the step after a terminal starts an episode
    tm = lambda x: np.swapaxes(x, 0, 1)  # noqa: E731
    preprocessed = tm(batch["image"]).astype(np.float32) / 255.0 - 0.5  # the seed's input space
    torch.manual_seed(0)
    seed_loss, _, seed_metrics = agent.world_model_loss(
        preprocessed, tm(batch["action"]), tm(batch["reward"]), 1.0 - tm(batch["is_terminal"]))
    torch.manual_seed(0)
    loss, _, metrics = agent.model_loss(agent._batch_to_tensors(batch))
    assert torch.allclose(seed_loss, loss) and seed_metrics.keys() == metrics.keys()
    with pytest.raises(ValueError, match="lacks keys"):  # a both-keys agent needs both arrays
        Dreamer(tiny_config("v3"), OBS_CASES["mixed"], 2, "cpu", discrete=True).world_model_loss(
            preprocessed, tm(batch["action"]), tm(batch["reward"]), 1.0 - tm(batch["is_terminal"]))
