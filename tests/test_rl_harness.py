"""The PPO harness: network shapes, GAE against hand-computed numbers, truncation bootstrapping,
and PPO learning CartPole over the subprocess vector env.

Worker processes start with ``spawn`` (seconds each on a loaded machine); every test that starts
one closes it.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from distwm.envs.gym_env import make_gym_env
from distwm.envs.vector_env import NumpyVectorizedEnv, TorchVectorizedEnv
from distwm.training.rl_harness import ActorCritic, GaussianActorCritic, PPOTrainer, create_rl_harness_example

CARTPOLE = functools.partial(make_gym_env, "CartPole-v1", obs_type="state")


def unstarted_trainer(**kwargs) -> PPOTrainer:
    return PPOTrainer(TorchVectorizedEnv(CARTPOLE, num_workers=1, envs_per_worker=2), **kwargs)


@pytest.mark.parametrize("obs_shape, obs", [((4,), torch.randn(5, 4)),
                                            ((3, 64, 64), torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)),
                                            ((1, 10, 10), torch.rand(5, 1, 10, 10))])
def test_actor_critic_shapes(obs_shape, obs):
    net = ActorCritic(obs_shape, action_dim=3, hidden_dim=32)
    logits, value = net(obs)
    assert logits.shape == (5, 3) and value.shape == (5, 1)
    action, log_prob, value = net.get_action(obs)
    assert action.shape == (5,) and action.dtype == torch.int64 and 0 <= int(action.min()) and int(action.max()) < 3
    assert log_prob.shape == (5,) and value.shape == (5, 1)
    assert torch.allclose(log_prob, torch.log_softmax(logits, -1).gather(1, action[:, None])[:, 0])
    assert net(obs[None])[0].shape == (1, 5, 3)  # leading dims are kept
    with pytest.raises(ValueError, match="Expected observations shaped"):
        net(obs[..., :1])


def test_gaussian_actor_critic_and_bad_arguments():
    net = GaussianActorCritic((6,), action_dim=2, hidden_dim=16)
    action, log_prob, value = net.get_action(torch.randn(7, 6))
    assert action.shape == (7, 2) and log_prob.shape == (7,) and value.shape == (7, 1)
    log_prob_again, entropy, _ = net.evaluate_actions(torch.randn(7, 6), action)
    assert entropy.shape == (7,) and torch.allclose(entropy, torch.full((7,), 2 * (0.5 + 0.5 * np.log(2 * np.pi))))
    with pytest.raises(ValueError, match="obs_shape"):
        ActorCritic((4, 4), 2)
    with pytest.raises(ValueError, match="action_dim"):
        ActorCritic((4,), 0)
    with pytest.raises(ValueError, match="gamma must be in"):
        unstarted_trainer(gamma=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        unstarted_trainer(batch_size=0)
    with pytest.raises(ValueError, match="VectorizedEnv"):
        PPOTrainer(object())


def test_compute_gae_matches_hand_computation():
    trainer = unstarted_trainer(gamma=0.5, gae_lambda=0.5)
    rewards = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 1.0]])
    values = torch.tensor([[0.5, 0.0], [1.0, 0.0], [2.0, 0.0], [4.0, 2.0]])  # last row: bootstrap
    dones = torch.tensor([[False, False], [True, False], [False, True]])
    # env 0: A2 = 3 + .5*4 - 2 = 3; A1 = 2 - 1 = 1 (episode ends: nothing flows back);
    #        A0 = (1 + .5*1 - .5) + .25*A1 = 1.25.   env 1: A2 = 1 (done: no bootstrap),
    #        A1 = 0 + .25*1 = .25, A0 = .25*.25 = .0625
    expected = torch.tensor([[1.25, 0.0625], [1.0, 0.25], [3.0, 1.0]])
    assert torch.allclose(trainer.compute_gae(rewards, values, dones), expected)
    # without the bootstrap row the last step of env 0 has nothing after it
    assert torch.allclose(trainer.compute_gae(rewards, values[:3], dones)[:, 0], torch.tensor([1.25, 1.0, 1.0]))
    with pytest.raises(ValueError, match="rows"):
        trainer.compute_gae(rewards, values[:2], dones)
    assert not trainer.vec_env._workers  # building a trainer starts no process


def test_truncation_bootstraps_but_termination_does_not():
    trainer = unstarted_trainer(gamma=0.5, gae_lambda=1.0)
    trajectory = {"values": torch.zeros(1, 2), "rewards": torch.ones(1, 2), "dones": torch.ones(1, 2, dtype=torch.bool),
                  "truncation_values": torch.tensor([[4.0, 0.0]]), "next_value": torch.tensor([9.0, 9.0])}
    advantages, returns = trainer.compute_advantages(trajectory)
    # env 0 was truncated: 1 + .5 * V(final obs) = 3; env 1 terminated: 1; next_value (a new episode) unused
    assert torch.allclose(advantages, torch.tensor([[3.0, 1.0]])) and torch.allclose(returns, advantages)


def test_continuous_actions_on_numpy_vector_env():
    torch.manual_seed(0)
    factory = functools.partial(make_gym_env, "Pendulum-v1", obs_type="state")
    with NumpyVectorizedEnv(factory, num_workers=1, envs_per_worker=2, seed=0) as venv:
        trainer = PPOTrainer(venv, num_epochs=2, batch_size=4)
        trajectories = trainer.collect_trajectories(8)
        assert isinstance(trainer.policy, GaussianActorCritic) and trainer.action_format == "continuous"
        assert trajectories["obs"].shape == (4, 2, 3) and trajectories["actions"].shape == (4, 2, 1)
        assert trajectories["rewards"].shape == (4, 2) and trajectories["next_value"].shape == (2,)
        assert trainer._env_actions(torch.tensor([[-5.0], [0.5]])).tolist() == [[-1.0], [0.5]]  # clipped
        before = trainer.policy.log_std.detach().clone()
        metrics = trainer.train_step(trajectories)
        assert all(np.isfinite(value) for value in metrics.values())
        assert not torch.equal(before, trainer.policy.log_std.detach())
        with pytest.raises(ValueError, match="num_steps"):
            trainer.collect_trajectories(1)


def test_ppo_improves_cartpole(capsys):
    torch.manual_seed(0)
    with TorchVectorizedEnv(CARTPOLE, num_workers=1, envs_per_worker=8, seed=0) as venv:
        trainer = PPOTrainer(venv)
        trainer.rollout_steps = 512
        history = trainer.train(6144, log_interval=2048)
        returns = history["episode_returns"]
        trajectories = trainer.collect_trajectories(16)
    assert history["timesteps"] == 6144 and len(history["iterations"]) == 12
    assert len(returns) == len(history["episode_lengths"]) == len(history["episode_end_steps"]) > 40
    assert returns == [float(length) for length in history["episode_lengths"]]  # CartPole: +1 a step
    first, last = np.mean(returns[:20]), np.mean(returns[-20:])
    assert first < 35  # a random policy lasts ~22 steps
    assert last > 60 and last > 2.5 * first, (first, last)
    printed = capsys.readouterr().out
    assert printed.count("steps/s") == 3 and "ETA" in printed and "mean return" in printed
    assert trajectories["obs"].shape == (2, 8, 4) and trajectories["actions"].dtype == torch.int64
    assert trajectories["dones"].dtype == torch.bool and trajectories["log_probs"].shape == (2, 8)


def test_example_builds_a_cartpole_trainer_without_starting_it():
    trainer = create_rl_harness_example()
    try:
        assert isinstance(trainer, PPOTrainer) and trainer.vec_env.num_envs == 8
        assert not trainer.vec_env._workers
    finally:
        trainer.close()
