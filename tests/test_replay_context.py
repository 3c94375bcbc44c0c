"""DreamerV3's replay context (``replay_context``, the 2024 recipe): replay names its steps and
takes entries back, acting stores the policy's latents, a training sequence starts from the
latent stored before it, the update writes its posteriors back, and a restarted shard has the
written-back entries (they are logged like inserts)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from distwm.agent import DEFAULT_SAMPLE
from distwm.loop.env_loop import EnvRunner, RandomActor
from distwm.memory.dreamer_memory import ReplayBuffer
from distwm.memory.replay import SequenceReplay
from distwm.models.dreamer import DreamerCore
from distwm.runtime.learner import Learner
from distwm.runtime.replay_shard import ReplayShard
from dreamer_helpers import random_batch, tiny_config

L = 4
SHAPES = {"state": (5,)}
ACTIONS = 2


def numbered_chunk(rows: int, start: int) -> dict[str, np.ndarray]:
    """``value[i, t] = 100 * row + stream step``: every stored step says where it came from."""
    steps = start + np.arange(L)
    value = (100 * np.arange(rows)[:, None] + steps[None]).astype(np.float32)
    return {"value": value, "tag": np.zeros((rows, L, 2), np.float32)}


# -- the replay: step ids and updates --------------------------------------------------------

def test_step_ids_name_the_sampled_steps_and_updates_land_there_until_evicted():
    replay = SequenceReplay(capacity=6 * L, chunk_length=L, seq_len=5, seed=0)
    for k in range(3):
        replay.insert(numbered_chunk(2, k * L), ["a", "b"], [k * L] * 2)
    batch = replay.sample(8, stepids=True)
    ids = batch["stepid"]
    assert ids.shape == (8, 5) and ids.dtype == np.int64
    # consecutive steps of one sequence: ids step by one inside a chunk
    assert replay.update(ids, {"tag": np.stack([batch["value"], -batch["value"]], -1)}) == ids.size
    again = replay.sample(64, stepids=True)
    written = np.isin(again["stepid"], ids)
    assert written.any() and not written.all()
    np.testing.assert_array_equal(again["tag"][..., 0][written], again["value"][written])
    assert not again["tag"][~written].any()
    # two more chunks evict the two oldest blocks (streams a and b at step 0): an update naming
    # their steps is skipped and leaves the chunks now in those blocks alone
    replay.insert(numbered_chunk(2, 3 * L), ["a", "b"], [3 * L] * 2)
    before = {k: v.copy() for k, v in replay.state_dict().items() if k.startswith("data/")}
    written = replay.update(ids, {"tag": np.full((*ids.shape, 2), 7.0, np.float32)})
    stale = (batch["value"] % 100) < L
    assert stale.any() and not stale.all()
    assert written == int((~stale).sum())
    after = replay.state_dict()
    changed = before["data/tag"] != after["data/tag"]
    assert changed.any() and (after["data/tag"][changed] == 7.0).all()
    newest = after["data/value"] % 100 >= 3 * L  # the chunks that took the evicted blocks
    assert not changed[newest].any()
    old = ids
    with pytest.raises(ValueError, match="not stored here"):
        replay.update(old, {"nope": np.zeros(old.shape)})


def test_step_ids_survive_a_save_and_load(tmp_path):
    replay = SequenceReplay(capacity=4 * L, chunk_length=L, seq_len=3, seed=1)
    for k in range(6):  # wraps the ring
        replay.insert(numbered_chunk(1, k * L), ["a"], [k * L])
    ids = replay.sample(5, stepids=True)["stepid"]
    path = replay.save(tmp_path / "r.npz")
    loaded = SequenceReplay(capacity=4 * L, chunk_length=L, seq_len=3, seed=1)
    loaded.load(path)
    for buf in (replay, loaded):
        buf.update(ids, {"tag": np.full((*ids.shape, 2), 3.0, np.float32)})
    np.testing.assert_array_equal(replay.state_dict()["data/tag"], loaded.state_dict()["data/tag"])


def test_a_restarted_shard_has_the_entries_the_learner_wrote_back(tmp_path):
    root = str(tmp_path / "replay")

    def make():
        return ReplayShard(0, 64, L, 5, 1.0, 8, 1e9, seed=0, store_root=root)

    async def scenario():
        first = make()
        await first.open()
        for k in range(4):
            await first.insert(["a", "b"], [k * L] * 2, numbered_chunk(2, k * L))
        batch, _ = await first.sample(3, seq_len=5, stepids=True)
        assert await first.update(batch["stepid"], {"tag": np.ones((3, 5, 2), np.float32)}) == 15
        second = make()  # the first died without closing anything
        await second.open()
        np.testing.assert_array_equal(second.replay.state_dict()["data/tag"],
                                      first.replay.state_dict()["data/tag"])
        assert second.replay.state_dict()["data/tag"].sum() > 0

    asyncio.run(scenario())


# -- the model --------------------------------------------------------------------------------

def core(context: int, **overrides) -> DreamerCore:
    torch.manual_seed(0)
    return DreamerCore(tiny_config("v3-2024", replay_context=context, **overrides), SHAPES, ACTIONS,
                       discrete=True)


def context_batch(agent: DreamerCore, steps: int = 7, seed: int = 0) -> dict[str, np.ndarray]:
    batch = random_batch(SHAPES, ACTIONS, True, batch=3, steps=steps, seed=seed)
    batch["is_first"][:] = False  # mid-episode sequences: the start state matters
    rng = np.random.default_rng(seed + 1)
    specs = agent.data_spec().entry_specs
    rssm = agent.world_model.rssm
    batch["ctx_deter"] = rng.uniform(-1, 1, (3, steps, rssm.deter_size)).astype(np.float16)
    batch["ctx_stoch"] = rng.integers(0, rssm.stoch_classes, (3, steps, rssm.stoch_size)).astype(
        specs["ctx_stoch"][1])
    batch["ctx_valid"] = np.ones((3, steps), bool)
    batch["stepid"] = np.arange(3 * steps).reshape(3, steps)
    return batch


def model_loss(agent: DreamerCore, batch) -> tuple[float, dict]:
    data = agent._batch_to_tensors(batch)
    if agent.args.replay_context:
        data = agent._apply_replay_context(data, batch)
    torch.manual_seed(1)
    loss, post, _ = agent.model_loss(data)
    return float(loss.detach()), {k: v.detach() for k, v in post.items()}


def test_the_data_spec_asks_for_context_steps_step_ids_and_latent_entries():
    spec = core(1).data_spec()
    sample = spec.sample(DEFAULT_SAMPLE)
    assert sample.seq_len == 1 + 6 and sample.stepids
    # updates per env step as without context: the train ratio counts trained steps only
    assert spec.updates_per_env_step == pytest.approx(core(0).data_spec().updates_per_env_step)
    entries = spec.entry_specs
    assert set(entries) == {"ctx_deter", "ctx_stoch", "ctx_valid"}
    assert entries["ctx_deter"][0] == (core(1).world_model.rssm.deter_size,)
    plain = core(0).data_spec()
    assert plain.sample(DEFAULT_SAMPLE).seq_len == 6 and not plain.entries
    partial = random_batch(SHAPES, ACTIONS, True, batch=2, steps=7)
    partial["ctx_deter"] = np.zeros((2, 7, 8), np.float16)
    with pytest.raises(ValueError, match="ctx_stoch"):
        core(1)._batch_to_tensors(partial)


def test_training_starts_from_the_stored_latent_before_the_sequence():
    agent = core(1)
    batch = context_batch(agent)
    base, _ = model_loss(agent, batch)
    later = {**batch, "ctx_deter": batch["ctx_deter"].copy()}
    later["ctx_deter"][:, 1:] = 0.5  # latents stored at trained steps are not read
    assert model_loss(agent, later)[0] == pytest.approx(base, abs=1e-6)
    start = {**batch, "ctx_deter": batch["ctx_deter"].copy()}
    start["ctx_deter"][:, 0] = 0.9  # the latent stored before the sequence is the start state
    assert abs(model_loss(agent, start)[0] - base) > 1e-4
    # with the stored latent by hand as the start state, the same loss without replay context
    plain = core(0)
    plain.world_model.load_state_dict(agent.world_model.state_dict())
    rest = {k: v[:, 1:] for k, v in batch.items() if not k.startswith("ctx_") and k != "stepid"}
    data = plain._batch_to_tensors(rest)
    data["start_deter"] = torch.as_tensor(batch["ctx_deter"][:, 0]).float()
    data["start_stoch"] = torch.nn.functional.one_hot(
        torch.as_tensor(batch["ctx_stoch"][:, 0]).long(), plain.world_model.rssm.stoch_classes).flatten(-2).float()
    torch.manual_seed(1)
    assert float(plain.model_loss(data)[0].detach()) == pytest.approx(base, abs=1e-5)


def test_a_step_without_a_stored_latent_starts_from_the_initial_state():
    agent = core(1)
    batch = context_batch(agent)
    batch["ctx_valid"][:] = False
    plain = core(0)
    plain.world_model.load_state_dict(agent.world_model.state_dict())
    rest = {k: v[:, 1:] for k, v in batch.items() if not k.startswith("ctx_") and k != "stepid"}
    expected = model_loss(plain, rest)[0]
    assert model_loss(agent, batch)[0] == pytest.approx(expected, abs=1e-5)
    # a batch without the entries at all: the same
    bare = {k: v for k, v in batch.items() if not k.startswith("ctx_")}
    assert model_loss(agent, bare)[0] == pytest.approx(expected, abs=1e-5)


def test_an_update_writes_its_posteriors_back_at_the_trained_steps():
    agent = core(1)
    batch = context_batch(agent)
    _, post = model_loss(agent, batch)
    updates = agent.replay_updates()[DEFAULT_SAMPLE]
    np.testing.assert_array_equal(updates["stepid"], batch["stepid"][:, 1:])
    np.testing.assert_allclose(updates["ctx_deter"], post["deter"].numpy(), atol=1e-3)
    rssm = agent.world_model.rssm
    onehot = post["stoch"].reshape(3, 6, rssm.stoch_size, rssm.stoch_classes)
    np.testing.assert_array_equal(updates["ctx_stoch"], onehot.argmax(-1).numpy())
    assert updates["ctx_valid"].all()
    assert agent.replay_updates() is None  # taken once
    agent.update({DEFAULT_SAMPLE: batch})  # the whole update leaves them too
    assert agent.replay_updates()[DEFAULT_SAMPLE]["ctx_deter"].shape == (3, 6, rssm.deter_size)
    assert core(0).replay_updates() is None


class _Env:
    """Two-step episodes of a 5-dim state: enough for the runner."""

    def __init__(self):
        import gymnasium as gym

        self.observation_space = gym.spaces.Dict({"state": gym.spaces.Box(-1, 1, (5,), np.float32)})
        self.action_space = gym.spaces.Box(0, 1, (ACTIONS,), np.float32)
        self.t = 0

    def reset(self, seed=None):
        self.t = 0
        return {"state": np.zeros(5, np.float32)}, {}

    def step(self, action):
        self.t += 1
        return {"state": np.full(5, self.t / 10, np.float32)}, 1.0, False, self.t >= 3, {}


def test_acting_stores_the_policys_latents_and_random_steps_store_none():
    agent = core(1)
    entries = agent.data_spec().entry_specs
    runner = EnvRunner([_Env(), _Env()], agent, seeds=[0, 1])
    records, _ = runner.step()
    state = runner._state
    assert records["ctx_valid"].all()
    np.testing.assert_allclose(records["ctx_deter"], state["deter"].numpy(), atol=1e-3)
    random = EnvRunner([_Env()], RandomActor([_Env()]), entries=entries)
    records, _ = random.step()
    assert not records["ctx_valid"].any() and not records["ctx_deter"].any()
    buffer = ReplayBuffer(64, SHAPES, ACTIONS, 7, 2, entries=entries)
    buffer.add_batch({k: v for k, v in records.items() if not k.startswith("ctx_")})  # zeros
    assert set(buffer._shapes) >= set(entries)


def test_the_learner_sends_each_rows_entries_to_its_shard():
    sent = []

    class Shard:
        def __init__(self, index):
            self.update = type("Remote", (), {"remote": lambda _, ids, values: sent.append(
                (index, ids.copy(), {k: v.copy() for k, v in values.items()}))})()

    class Agent:
        def replay_updates(self):
            return {"sequences": {"stepid": np.arange(6).reshape(3, 2),
                                  "ctx_deter": np.arange(6.0).reshape(3, 2, 1)}}

    learner = Learner.__new__(Learner)
    learner.agent = Agent()
    learner.fetcher = type("F", (), {"dead": {2}})()
    learner._shards = [Shard(0), Shard(1), Shard(2)]
    learner._write_back({"sequences": {"shard": np.array([1, 0, 1], np.int32)}})
    by_shard = {i: (ids, values) for i, ids, values in sent}
    np.testing.assert_array_equal(by_shard[1][0], [[0, 1], [4, 5]])
    np.testing.assert_array_equal(by_shard[0][1]["ctx_deter"][..., 0], [[2, 3]])
    assert set(by_shard) == {0, 1}


@pytest.mark.ray
def test_a_runtime_run_stores_acting_latents_and_writes_posteriors_back(ray_session, tmp_path):
    """Through Ray: env workers store the policy's latents with every step, the learner's
    write-backs reach the shard's log (so a restarted shard has them)."""
    import glob

    from distwm.configs.dreamer_config import DreamerConfig
    from distwm.configs.runtime_config import RuntimeConfig
    from distwm.runtime import run
    from distwm.runtime.replay_store import INSERT, UPDATE, read_records

    agent = DreamerConfig(env="CartPole-v1", env_backend="gym", action_repeat=1, version="v3-2024",
                          model_size="tiny", batch_size=2, train_seq_len=8, imagine_horizon=3,
                          train_ratio=4.0, warmup_steps=0)
    runtime = RuntimeConfig(workers=1, envs_per_worker=2, shards=1, steps=256, chunk_length=16,
                            capacity=4096, min_fill=64, eval_interval=0, eval_episodes=0,
                            progress_seconds=1.0, collect_seconds=0.3, train_seconds=0.5,
                            learner_gpus=0, run_dir=str(tmp_path / "run"), verbose=False)
    result = run(agent, runtime)
    assert result.summary["updates"] > 0
    kinds, valid, updated = [], [], 0
    for part in sorted(glob.glob(str(tmp_path / "run" / "replay" / "shard_0" / "log-*.bin"))):
        with open(part, "rb") as stream:
            for kind, value in read_records(stream):
                kinds.append(kind)
                if kind == INSERT:
                    valid.append(value[2]["ctx_valid"])
                elif kind == UPDATE:
                    assert value[2]["stepid"].shape[1] == 8 and value[2]["ctx_valid"].all()
                    updated += value[2]["stepid"].size
    assert valid and all(v.all() for v in valid)  # the workers' policy filled every step
    assert updated > 0 and UPDATE in kinds
