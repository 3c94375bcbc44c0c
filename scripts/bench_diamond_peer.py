#!/usr/bin/env python
"""Seconds per DIAMOND update in the peer library simulusion 1.1.0 (CPU), for comparison with distwm.

Standalone: run it with the PEER's interpreter, never with distwm's environment, and it
imports nothing from distwm::

    OMP_WAIT_POLICY=PASSIVE /work/main/.peer-venv/bin/python scripts/bench_diamond_peer.py \
        [--threads N] [--repeats R] [--size default|tiny] [--action-size 6] \
        [--denoiser-batch 32] [--reward-batch 32] [--ac-batch 32] [--imagine-batch 8] \
        [--horizon 15] [--conditioning-frames 4] [--seed 0]

It builds ``simulusion.training.train_diamond.DiamondAgent(DiamondConfig(...), env=...)`` (the
env is a stand-in that only carries a ``Discrete`` action space: the agent reads nothing else
from it while building, and nothing here steps it) and times, on random batches laid out
exactly as the trainer's ``SequenceDataset`` yields them (``obs_seq`` ``(B, L + H, 3, 64, 64)``
and ``next_obs`` ``(B, 3, 64, 64)`` float32 in ``[-1, 1]`` made from uint8 by its
``to_model_domain``, ``action_seq`` ``(B, L + H)`` int64, ``rewards`` float32 in {-1, 0, 1},
``dones`` bool), the three steps of one iteration of ``DiamondAgent.train_epoch``:

(a) ``agent._update_diffusion_model(batch)``: one denoiser step (it conditions on the last
    ``L`` frames of ``obs_seq`` and their actions and denoises ``next_obs``);
(b) ``agent._update_reward_model(batch)``: one reward/termination step over ``obs_seq``;
(c) ``agent._update_actor_critic(batch)``: burn-in on ``obs_seq[:, :L]``, ``H`` imagined steps
    (``_imagine_trajectory``), the REINFORCE / value step;
(d) imagination alone: the burn-in of (c) (reward model and actor-critic over the first
    ``L - 1`` frames, no_grad) then ``agent._imagine_trajectory(...)`` with ``B = --imagine-batch``:
    imagined steps/s = B * H / seconds.

One warm-up call of each, then ``--repeats`` timed calls; the medians are reported (wall clock,
and process CPU time, which a busy machine disturbs less). Only the replay sampling / DataLoader
is left out (as in bench_iris_peer.py).

Environment work-arounds (stated in the output's notes): simulusion's ``train_diamond`` module
imports ``gymnasium.spaces`` (``Discrete``, ``Box``) at the top, and this venv has no gymnasium;
a stand-in module with those two classes is put into ``sys.modules`` when the real one is
missing. Nothing timed uses it. torchvision in this venv fails to import (its C ops do not
match torch 2.13); the DIAMOND code path never imports it.

Prints one JSON object on stdout; progress and the peer's log go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import sys
import time
import types

from bench_timing import timed

SIZES = ("default", "tiny")

# Per-size defaults of the batch/length arguments (used when not given on the command line).
RUN_DEFAULTS = {
    "default": dict(denoiser_batch=32, reward_batch=32, ac_batch=32, imagine_batch=8, horizon=15,
                    conditioning_frames=4),
    "tiny": dict(denoiser_batch=4, reward_batch=4, ac_batch=4, imagine_batch=4, horizon=5,
                 conditioning_frames=2),
}

# DiamondConfig overrides for --size tiny: the networks of distwm's DiamondCore.tiny_test_config
# (the peer's U-Net group norms have 32 groups, so its channels stay multiples of 32).
TINY_CONFIG = dict(
    diffusion_channels=[32, 32],
    diffusion_res_blocks=1,
    diffusion_cond_dim=32,
    reward_channels=[32, 32],
    reward_res_blocks=1,
    reward_cond_dim=16,
    reward_lstm_dim=16,
    actor_channels=[8, 8],
    actor_lstm_dim=16,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's own choice)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls after one warm-up")
    p.add_argument("--action-size", type=int, default=6)
    p.add_argument("--denoiser-batch", type=int, default=None)
    p.add_argument("--reward-batch", type=int, default=None)
    p.add_argument("--ac-batch", type=int, default=None)
    p.add_argument("--imagine-batch", type=int, default=None)
    p.add_argument("--horizon", type=int, default=None, help="H: imagined steps")
    p.add_argument("--conditioning-frames", type=int, default=None,
                   help="L: conditioning frames = burn-in length (sequences are L + H steps)")
    p.add_argument("--size", choices=SIZES, default="default")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for key, value in RUN_DEFAULTS[args.size].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.conditioning_frames < 2:
        p.error("--conditioning-frames must be >= 2 (the trainer burns in on L - 1 frames)")
    return args


def log(msg: str) -> None:
    print(f"[bench_diamond_peer {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ensure_gymnasium_spaces() -> str:
    """Import gymnasium.spaces, or install a stand-in with ``Discrete`` and ``Box``."""
    try:
        import gymnasium.spaces  # noqa: F401
        return "real gymnasium"
    except ImportError:
        pass
    spaces = types.ModuleType("gymnasium.spaces")

    class Space:
        pass

    class Discrete(Space):
        def __init__(self, n, *args, **kwargs):
            self.n = int(n)

    class Box(Space):
        def __init__(self, low=None, high=None, shape=None, dtype=None, *args, **kwargs):
            self.low, self.high, self.shape, self.dtype = low, high, shape, dtype

    spaces.Space, spaces.Discrete, spaces.Box = Space, Discrete, Box
    gym = types.ModuleType("gymnasium")
    gym.spaces = spaces
    gym.__stand_in__ = True
    sys.modules["gymnasium"] = gym
    sys.modules["gymnasium.spaces"] = spaces
    return "stand-in (no gymnasium in the peer venv): gymnasium.spaces.Discrete/Box only"


def torchvision_status() -> str:
    try:
        import torchvision
        return f"importable ({torchvision.__version__})"
    except Exception as exc:  # noqa: BLE001
        return f"import fails: {type(exc).__name__}: {str(exc)[:120]}"


def main(argv=None) -> dict:
    args = parse_args(argv)
    # The peer's loggers attach a stderr handler only when the root logger has none; give the
    # root one on stderr so nothing of theirs can reach stdout, which carries the JSON alone.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    gym_status = ensure_gymnasium_spaces()

    import numpy as np
    import simulusion
    import torch
    from gymnasium.spaces import Discrete
    from simulusion.configs.diamond_config import DiamondConfig
    from simulusion.datasets.diamond_dataset import to_model_domain
    from simulusion.training.train_diamond import DiamondAgent

    tv_status = torchvision_status()  # after the peer's imports: none of them needs it
    tv_loaded = "torchvision" in sys.modules and not getattr(sys.modules["torchvision"], "__stand_in__", False)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    L, H, A = args.conditioning_frames, args.horizon, args.action_size
    overrides = dict(TINY_CONFIG) if args.size == "tiny" else {}
    overrides.update(device="cpu", seed=args.seed, num_conditioning_frames=L, burn_in_length=L,
                     imagination_horizon=H, data_loader_num_workers=0, pin_memory=False,
                     persistent_workers=False)
    config = DiamondConfig(**overrides)

    class _NoEnv:
        """What DiamondAgent reads from its env while building: the action space."""

        action_space = Discrete(A)

        def reset(self, *a, **k):
            raise RuntimeError("the benchmark never steps the environment")

        step = reset

    log(f"simulusion {getattr(simulusion, '__version__', '?')} from {simulusion.__file__}")
    log(f"torch {torch.__version__}, threads {torch.get_num_threads()}, size {args.size}; gymnasium: {gym_status}")
    t0 = time.perf_counter()
    agent = DiamondAgent(config, env=_NoEnv())
    log(f"agent built in {time.perf_counter() - t0:.1f}s; precision {agent.precision}")

    T = L + H  # SequenceDataset(sequence_length=burn_in_length + imagination_horizon)

    def batch(b: int) -> dict:
        """A batch as DataLoader(SequenceDataset) collates it (after _move_batch_to_device)."""
        obs = rng.integers(0, 256, size=(b, T, 64, 64, 3), dtype=np.uint8)
        nxt = rng.integers(0, 256, size=(b, 64, 64, 3), dtype=np.uint8)
        act = torch.from_numpy(rng.integers(0, A, size=(b, T))).long()
        return {
            "obs_seq": to_model_domain(torch.from_numpy(obs)).permute(0, 1, 4, 2, 3),
            "action_seq": act,
            "actions": act,
            "rewards": torch.from_numpy(rng.choice([-1.0, 0.0, 1.0], size=(b, T), p=[0.05, 0.9, 0.05])).float(),
            "dones": torch.from_numpy(rng.random((b, T)) < 0.01),
            "next_obs": to_model_domain(torch.from_numpy(nxt)).permute(0, 3, 1, 2),
        }

    den_batch, rew_batch, ac_batch, im_batch = (batch(args.denoiser_batch), batch(args.reward_batch),
                                                batch(args.ac_batch), batch(args.imagine_batch))

    # (c) split into imagination and the rest by wrapping the agent's own _imagine_trajectory
    ac_parts = {"imagine_trajectory": [], "total": []}
    lengths = {"actor_critic": [], "imagine": []}
    imagine_trajectory = agent._imagine_trajectory

    def timed_imagine(*a, **k):
        w0 = time.perf_counter()
        out = imagine_trajectory(*a, **k)
        ac_parts["imagine_trajectory"].append(time.perf_counter() - w0)
        lengths["actor_critic"].append(int(out[3].shape[1]))
        return out

    def ac_step():
        agent._imagine_trajectory = timed_imagine
        try:
            w0 = time.perf_counter()
            out = agent._update_actor_critic(ac_batch)
            ac_parts["total"].append(time.perf_counter() - w0)
        finally:
            del agent._imagine_trajectory
        return out

    # (d) the first half of _update_actor_critic, up to and including the imagination
    def imagine():
        obs_history = im_batch["obs_seq"][:, :L]
        action_history = im_batch["action_seq"][:, :L]
        B = obs_history.shape[0]
        with torch.no_grad():
            reward_hidden = agent.reward_model.init_hidden(B, agent.device)
            policy_hidden = agent.actor_critic.init_hidden(B, agent.device)
            _, _, reward_hidden = agent.reward_model(obs_history[:, :-1], action_history[:, :-1], reward_hidden)
            _, _, policy_hidden = agent.actor_critic(obs_history[:, :-1], policy_hidden)
        out = agent._imagine_trajectory(obs_history, action_history, reward_hidden, policy_hidden=policy_hidden)
        lengths["imagine"].append(int(out[3].shape[1]))
        return out

    results = {}
    results["denoiser"] = timed(lambda: agent._update_diffusion_model(den_batch), args.repeats, "denoiser update", log)
    results["reward_end"] = timed(lambda: agent._update_reward_model(rew_batch), args.repeats, "reward/end update", log)
    agent.actor_critic.train()
    results["actor_critic"] = timed(ac_step, args.repeats, "actor-critic step", log)
    results["imagine"] = timed(imagine, args.repeats, "imagination", log)

    med = {k: statistics.median(v[0]) for k, v in results.items()}
    med_cpu = {k: statistics.median(v[1]) for k, v in results.items()}
    ac_imag = statistics.median(ac_parts["imagine_trajectory"][1:])
    ac_breakdown = {"imagine_trajectory": ac_imag,
                    "rest (burn-in + policy re-run with grad + loss + step)":
                        statistics.median([t - i for t, i in zip(ac_parts["total"][1:],
                                                                 ac_parts["imagine_trajectory"][1:])])}

    def nparams(*mods):
        return int(sum(p.numel() for m in mods for p in m.parameters()))

    s = agent.sampler
    cfg_out = {
        "size": args.size,
        "device": "cpu",
        "precision": agent.precision.name,
        "action_size": A,
        "obs_size": config.obs_size,
        "conditioning_frames": L,
        "burn_in_length": config.burn_in_length,
        "imagination_horizon": H,
        "sequence_length": T,
        "diffusion_channels": list(config.diffusion_channels),
        "diffusion_res_blocks": config.diffusion_res_blocks,
        "diffusion_cond_dim": config.diffusion_cond_dim,
        "reward_channels": list(config.reward_channels),
        "reward_res_blocks": config.reward_res_blocks,
        "reward_cond_dim": config.reward_cond_dim,
        "reward_lstm_dim": config.reward_lstm_dim,
        "reward_lstm_input": agent.reward_model.feature_size,
        "actor_channels": list(config.actor_channels),
        "actor_res_blocks": config.actor_res_blocks,
        "actor_lstm_dim": config.actor_lstm_dim,
        "actor_lstm_input": agent.actor_critic.feature_size,
        "edm": {"sigma_data": config.sigma_data, "p_mean": config.p_mean, "p_std": config.p_std,
                "training_sigma_clip": None, "offset_noise": None, "conditioning_frame_noise": None},
        "sampler": {"class": type(s).__name__, "steps": s.num_steps, "sigma_min": s.sigma_min,
                    "sigma_max": s.sigma_max, "rho": s.rho, "sigmas": [float(x) for x in s.t_steps],
                    "initial_noise_std": float(s.t_steps[0])},
        "grad_clip": {"diffusion": agent.diffusion_update.max_grad_norm,
                      "reward": agent.reward_update.max_grad_norm, "actor": agent.actor_update.max_grad_norm},
        "lr_warmup": None,
        "learning_rate": config.learning_rate,
        "weight_decay": {"diffusion": config.weight_decay_diffusion, "reward": config.weight_decay_reward,
                         "actor": config.weight_decay_actor},
        "discount": config.discount_factor,
        "lambda": config.lambda_returns,
        "entropy_weight": config.entropy_weight,
        "peer_batch_size": config.batch_size,
        "batches_used": {"denoiser": args.denoiser_batch, "reward_end": args.reward_batch,
                         "actor_critic": args.ac_batch, "imagine": args.imagine_batch},
        "params": {"denoiser": nparams(agent.diffusion_model), "reward_end": nparams(agent.reward_model),
                   "actor_critic": nparams(agent.actor_critic)},
        "gymnasium": gym_status,
        "torchvision": tv_status + ("; loaded by the peer" if tv_loaded else "; not imported by the DIAMOND path"),
    }
    Bd, Br, Ba, Bi = args.denoiser_batch, args.reward_batch, args.ac_batch, args.imagine_batch
    notes = {
        "denoiser_update": (
            f"agent._update_diffusion_model(batch of {Bd} x {T}-frame obs_seq): conditions on obs_seq[:, -{L}:] "
            f"and action_seq[:, -{L}:], denoises next_obs ({Bd},3,64,64), the successor of the last frame: one "
            f"target frame per {T}-frame sequence (the same {L} + 1 frames per sample as distwm's window; the "
            f"other {T - L - 1} frames of each sample go unused). sigma ~ exp(N({config.p_mean}, {config.p_std}^2)) "
            "not clipped to [2e-3, 20], plain Gaussian noise (no offset noise), conditioning frames clean (as in "
            "the Atari reference and distwm), EDM-preconditioned U-Net (middle attention), MSE, one AdamW step; "
            "no gradient clipping, no lr warm-up"),
        "reward_end_update": (
            f"agent._update_reward_model(obs_seq ({Br},{T},3,64,64), action_seq ({Br},{T})): CNN on each frame alone "
            f"(3 channels: o_t, not (o_t, o_t+1) as the reference and distwm), max-pool stages, flattened "
            f"{agent.reward_model.feature_size} features into nn.LSTM({config.reward_lstm_dim}) over all {T} steps, "
            f"reward CE (3 classes) + termination CE over the first {T - 1} steps, one AdamW step, no clipping"),
        "actor_critic_update": (
            f"agent._update_actor_critic(batch of {Ba}): burn-in (no_grad) of the reward LSTM and the actor-critic "
            f"on obs_seq[:, :{L - 1}]; _imagine_trajectory (no_grad): {H} x (policy samples a_i on x_i, reward "
            f"model predicts r_i, d_i from (x_i, a_i), EulerSampler {s.num_steps} steps from sigma {s.sigma_max:g} "
            f"samples x_i+1 from the last {L} frames and actions); then the actor-critic re-runs with grad over the "
            f"{H + 1} frames x_0..x_H from the burned-in state, lambda-returns (gamma {config.discount_factor}, "
            f"lambda {config.lambda_returns}, no reset after an imagined end), REINFORCE + entropy "
            f"{config.entropy_weight} + value MSE, one AdamW step; replay sampling left out"),
        "imagine": (
            f"the first half of _update_actor_critic with {Bi} starts: burn-in on {L - 1} frames, then "
            f"agent._imagine_trajectory for {H} steps ({s.num_steps} denoising U-Net calls per step, plus policy "
            f"and reward-model steps); imagined steps/s = {Bi} * {H} / seconds"),
        "deviations_from_reference": (
            f"sampler sigma_max {s.sigma_max:g} (paper and reference Atari config: 5; sigmas {[round(float(x), 4) for x in s.t_steps]}), "
            "initial noise std = sigma_max; U-Net avg-pools after every level (64 -> 4, middle attention at 4x4; the "
            "reference downsamples between levels only, 64 -> 8); training sigma not clipped to [2e-3, 20]; no offset noise (paper 0.3); "
            "no 8-bit quantisation of denoised frames; reward model without the next frame, attention or the "
            f"MLP head, max-pooling after every stage (LSTM input {agent.reward_model.feature_size}; distwm 2048); "
            "no gradient clipping (the reference config, as distwm's DiamondConfig: 1 / 100 / 100) and no lr warm-up; "
            f"its trainer feeds all three updates one {T}-frame batch, so the denoiser learns one target frame "
            f"per {T}-frame sequence. Conditioning-frame noise is absent from the Atari reference as well "
            "(distwm's noise_conditioning_frames defaults to off), so it is not a deviation here"),
        "environment": (f"gymnasium: {gym_status}; torchvision: {cfg_out['torchvision']}; precision fp32 "
                        "(use_amp only applies on CUDA)"),
        "timing": (f"median of {args.repeats} call(s) after 1 warm-up; wall clock (time.perf_counter); "
                   "cpu_s is process CPU time"),
        "data": "random uint8 frames mapped by to_model_domain to [-1, 1] (as SequenceDataset); untrained weights",
    }
    out = {
        "peer": f"simulusion {getattr(simulusion, '__version__', '1.1.0')}",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "config": cfg_out,
        "denoiser_update_s": med["denoiser"],
        "reward_end_update_s": med["reward_end"],
        "actor_critic_update_s": med["actor_critic"],
        "imagine_s": med["imagine"],
        "imagined_steps_per_s": Bi * H / med["imagine"],
        "cpu_s": {"denoiser_update": med_cpu["denoiser"], "reward_end_update": med_cpu["reward_end"],
                  "actor_critic_update": med_cpu["actor_critic"], "imagine": med_cpu["imagine"]},
        "actor_critic_parts_s": ac_breakdown,
        "imagined_lengths": lengths,
        "repeats": args.repeats,
        "notes": notes,
    }
    return out


if __name__ == "__main__":
    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        result = main()
    real_stdout.write(json.dumps(result, indent=2) + "\n")
    real_stdout.flush()
