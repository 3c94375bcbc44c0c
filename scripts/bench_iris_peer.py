#!/usr/bin/env python
"""Seconds per IRIS update in the peer library simulusion 1.1.0 (CPU), for comparison with distwm.

Standalone: run it with the PEER's interpreter, never with distwm's environment, and it
imports nothing from distwm::

    OMP_WAIT_POLICY=PASSIVE /work/main/.peer-venv/bin/python scripts/bench_iris_peer.py \
        [--threads N] [--repeats R] [--size default|tiny] [--action-size 6] \
        [--tokenizer-batch 64] [--wm-batch 64] [--ac-batch 64] [--imagine-batch 8] \
        [--horizon 20] [--seq-len 20] [--perceptual peer|vgg16-random|off] [--seed 0]

It builds ``simulusion.models.iris_agent.IRISAgent(IRISConfig(...), action_size, cpu)`` and
times, on random data of the shapes simulusion's trainer (``training/train_iris.py``) feeds
it (frames float32 in [0, 1], made as uint8 / 255 exactly like ``IRISTrainer.to_float_tensor``):

(a) ``update_autoencoder(frames (B, 3, 64, 64))``: one tokenizer step;
(b) ``update_transformer(frames (B, T+1, 3, 64, 64), one-hot actions (B, T, A) float32,
    rewards (B, T) float32 in {-1, 0, 1}, terminals (B, T) int64)``: one world-model step
    (it re-encodes all B*(T+1) frames with the tokenizer under no_grad first);
(c) one actor-critic step as ``IRISTrainer.train_epoch`` phase 4 does it:
    ``reconstruct(burn_in (B, burn_in_length, 3, 64, 64))`` (encode + decode of every burn-in
    frame), ``imagine_rollout(start (B, 3, 64, 64), horizon, burn_in_frames=...)``, then
    ``update_actor_critic(trajectory)``; only the replay sampling is left out;
(d) ``imagine_rollout(start (B, 3, 64, 64), horizon, stop_on_termination=False)`` without
    burn-in: imagined steps/s = B * horizon / seconds.

One warm-up call of each, then ``--repeats`` timed calls; the medians are reported (wall clock,
and process CPU time, which a busy machine disturbs less). The batch and length arguments
default to the values above for ``--size default`` and to small ones for ``--size tiny``
(a few-second smoke test); given explicitly they apply to both sizes.

``--perceptual``: simulusion's autoencoder loss adds an LPIPS-style VGG16 perceptual term
(``vision/perceptual_loss.py``), built from torchvision with ImageNet weights; when that fails
(no torchvision, no weights, no network) the peer silently drops the term. ``peer`` (default)
times whatever the peer builds in this environment; ``vgg16-random`` substitutes a stand-in
``torchvision.models.vgg16`` with the same layer layout and random weights, so the peer's own
LPIPS code runs with the paper's compute; ``off`` sets ``perceptual_weight=0``.

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
    "default": dict(tokenizer_batch=64, wm_batch=64, ac_batch=64, imagine_batch=8,
                    horizon=20, seq_len=20),
    "tiny": dict(tokenizer_batch=8, wm_batch=4, ac_batch=4, imagine_batch=4,
                 horizon=5, seq_len=5),
}

# IRISConfig overrides for --size tiny. tokens_per_frame must stay 16 with 4 encoder layers:
# the peer's decoder always upsamples 4 times (4x4 -> 64x64) and the encoder checks that
# (64 / 2**encoder_layers)**2 == tokens_per_frame.
TINY_CONFIG = dict(
    vocab_size=64,
    tokens_per_frame=16,
    token_embedding_dim=32,
    encoder_channels=16,
    encoder_layers=4,
    encoder_residual_blocks=1,
    decoder_depth=16,
    transformer_embed_dim=64,
    transformer_layers=2,
    transformer_heads=2,
    actor_hidden_size=64,
    burn_in_length=4,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's own choice)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls after one warm-up")
    p.add_argument("--action-size", type=int, default=6)
    p.add_argument("--tokenizer-batch", type=int, default=None)
    p.add_argument("--wm-batch", type=int, default=None)
    p.add_argument("--ac-batch", type=int, default=None)
    p.add_argument("--imagine-batch", type=int, default=None)
    p.add_argument("--horizon", type=int, default=None)
    p.add_argument("--seq-len", type=int, default=None,
                   help="T: actions per world-model sequence (T+1 frames)")
    p.add_argument("--size", choices=SIZES, default="default")
    p.add_argument("--perceptual", choices=("peer", "vgg16-random", "off"), default="peer")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for key, value in RUN_DEFAULTS[args.size].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def log(msg: str) -> None:
    print(f"[bench_iris_peer {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def install_vgg16_stand_in() -> None:
    """Put a minimal ``torchvision.models`` with a random-weight VGG16 into sys.modules.

    Layer layout identical to torchvision's ``vgg16().features`` (configuration "D": 13 3x3
    convs with ReLU, 5 max-pools), so the block indices in simulusion's ``_VGG16_BLOCKS``
    select the same layers and the perceptual loss costs what the real one costs.
    """
    import torch.nn as nn

    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
           512, 512, 512, "M"]

    class _VGG(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c = [], 3
            for v in cfg:
                if v == "M":
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                else:
                    layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                    c = v
            self.features = nn.Sequential(*layers)

    def vgg16(weights=None):
        return _VGG()

    def vgg16_bn(weights=None):
        raise RuntimeError("vgg16_bn is not provided by the benchmark's stand-in")

    models = types.ModuleType("torchvision.models")
    models.vgg16 = vgg16
    models.vgg16_bn = vgg16_bn
    models.VGG16_Weights = types.SimpleNamespace(IMAGENET1K_V1=None)
    models.VGG16_BN_Weights = types.SimpleNamespace(IMAGENET1K_V1=None)
    tv = types.ModuleType("torchvision")
    tv.models = models
    tv.__stand_in__ = True
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.models"] = models


def torchvision_status() -> str:
    try:
        import torchvision  # noqa: F401
        from torchvision import models  # noqa: F401
        return f"importable ({torchvision.__version__})"
    except Exception as exc:  # noqa: BLE001
        return f"import fails: {type(exc).__name__}: {exc}"


def main(argv=None) -> dict:
    args = parse_args(argv)
    # The peer's loggers attach a stderr handler only when the root logger has none; give the
    # root one on stderr so nothing of theirs can reach stdout, which carries the JSON alone.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    tv_status = torchvision_status()
    if args.perceptual == "vgg16-random":
        install_vgg16_stand_in()

    import numpy as np
    import torch
    import torch.nn.functional as F

    import simulusion
    from simulusion.configs.iris_config import IRISConfig
    from simulusion.models.iris_agent import IRISAgent

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = torch.device("cpu")

    overrides = dict(TINY_CONFIG) if args.size == "tiny" else {}
    # The world-model windows the trainer samples are transformer_timesteps long.
    overrides["transformer_timesteps"] = args.seq_len
    overrides["imagination_horizon"] = args.horizon
    if args.perceptual == "off":
        overrides["perceptual_weight"] = 0.0
    config = IRISConfig(**overrides)

    log(f"simulusion {getattr(simulusion, '__version__', '?')} from {simulusion.__file__}")
    log(f"torch {torch.__version__}, threads {torch.get_num_threads()}, size {args.size}")
    t0 = time.perf_counter()
    agent = IRISAgent(config, action_size=args.action_size, device=device)
    log(f"agent built in {time.perf_counter() - t0:.1f}s; precision {agent.precision}")

    perc = agent.perceptual_loss
    if perc is None:
        perceptual = ("none: the peer dropped its perceptual term"
                      + (" (perceptual_weight=0)" if args.perceptual == "off"
                         else f" (torchvision {tv_status})"))
    else:
        learned = getattr(perc, "has_learned_weights", False)
        perceptual = (f"{type(perc).__name__} over {len(perc.blocks)} VGG16 blocks, "
                      + ("random-weight stand-in VGG16 (same layers as torchvision's)"
                         if args.perceptual == "vgg16-random" else "torchvision VGG16")
                      + ("; learned LPIPS channel weights" if learned
                         else "; uniform channel weights"))

    C, H, W = config.get_frame_shape()
    A = args.action_size

    def frames(*lead):
        x = rng.integers(0, 256, size=(*lead, C, H, W), dtype=np.uint8)
        return torch.from_numpy(x).float().div_(255.0)

    # (a) tokenizer
    tok_frames = frames(args.tokenizer_batch)

    # (b) world model
    T = args.seq_len
    wm_frames = frames(args.wm_batch, T + 1)
    act_idx = torch.from_numpy(rng.integers(0, A, size=(args.wm_batch, T)))
    wm_actions = F.one_hot(act_idx, A).float()  # replay stores one-hot float32
    wm_rewards = torch.from_numpy(
        rng.choice([-1.0, 0.0, 1.0], size=(args.wm_batch, T), p=[0.05, 0.9, 0.05])
    ).float()
    wm_terms = torch.from_numpy((rng.random((args.wm_batch, T)) < 0.01).astype(np.int64))

    # (c) actor-critic step
    ac_start = frames(args.ac_batch)
    ac_burn = frames(args.ac_batch, config.burn_in_length)
    ac_parts = {"burn_in_reconstruct": [], "imagine_rollout": [], "update_actor_critic": []}
    ac_lengths = []

    def ac_step():
        w0 = time.perf_counter()
        burn = agent.reconstruct(ac_burn)
        w1 = time.perf_counter()
        traj = agent.imagine_rollout(initial_frame=ac_start, horizon=args.horizon,
                                     burn_in_frames=burn)
        w2 = time.perf_counter()
        out = agent.update_actor_critic(traj)
        w3 = time.perf_counter()
        ac_parts["burn_in_reconstruct"].append(w1 - w0)
        ac_parts["imagine_rollout"].append(w2 - w1)
        ac_parts["update_actor_critic"].append(w3 - w2)
        ac_lengths.append(int(traj["actions"].shape[1]))
        return out

    # (d) imagination throughput
    im_start = frames(args.imagine_batch)
    im_lengths = []

    def imagine():
        traj = agent.imagine_rollout(initial_frame=im_start, horizon=args.horizon,
                                     stop_on_termination=False)
        im_lengths.append(int(traj["actions"].shape[1]))
        return traj

    results = {}
    results["tokenizer"] = timed(lambda: agent.update_autoencoder(tok_frames),
                                 args.repeats, "tokenizer update", log)
    results["world_model"] = timed(
        lambda: agent.update_transformer(wm_frames, wm_actions, wm_rewards, wm_terms),
        args.repeats, "world-model update", log)
    results["actor_critic"] = timed(ac_step, args.repeats, "actor-critic step", log)
    results["imagine"] = timed(imagine, args.repeats, "imagine_rollout", log)

    med = {k: statistics.median(v[0]) for k, v in results.items()}
    med_cpu = {k: statistics.median(v[1]) for k, v in results.items()}
    # Drop the warm-up entry of the breakdown lists.
    ac_breakdown = {k: statistics.median(v[1:]) for k, v in ac_parts.items()}
    im_steps = args.imagine_batch * args.horizon

    def nparams(*mods):
        return int(sum(p.numel() for m in mods for p in m.parameters()))

    cnn_channels = [m.out_channels for m in agent.cnn.conv if isinstance(m, torch.nn.Conv2d)]
    cfg_out = {
        "size": args.size,
        "device": "cpu",
        "precision": agent.precision.name,
        "frame_shape": [C, H, W],
        "action_size": A,
        "vocab_size": config.vocab_size,
        "tokens_per_frame": config.tokens_per_frame,
        "token_embedding_dim": config.token_embedding_dim,
        "quantizer": config.quantizer,
        "encoder_channels": [m[0].out_channels for m in agent.encoder.conv_blocks],
        "encoder_residual_blocks_per_layer": config.encoder_residual_blocks,
        "encoder_attention_resolutions": sorted(
            int(n.split("_")[1]) for n in agent.encoder.attentions.keys()),
        "decoder_depth": config.decoder_depth,
        "perceptual_loss": perceptual,
        "loss_weights": {"reconstruction_l1": config.reconstruction_weight,
                         "commitment": config.commitment_weight,
                         "perceptual": config.perceptual_weight},
        "transformer_embed_dim": config.transformer_embed_dim,
        "transformer_layers": config.transformer_layers,
        "transformer_heads": config.transformer_heads,
        "transformer_dropout": config.transformer_dropout,
        "transformer_timesteps": config.transformer_timesteps,
        "transformer_max_positions": agent.transformer.max_seq_len,
        "wm_sequence_tokens": T * (config.tokens_per_frame + 1) + config.tokens_per_frame,
        "gradient_checkpointing": bool(agent.transformer.gradient_checkpointing),
        "reward_head_classes": agent.transformer.reward_classes,
        "actor_critic_cnn_channels": cnn_channels,
        "actor_critic_cnn_fc": [agent.cnn.fc.in_features, agent.cnn.fc.out_features],
        "actor_critic_lstm": {"input": config.actor_hidden_size,
                              "hidden": config.actor_hidden_size,
                              "layers": config.actor_layers},
        "burn_in_length": config.burn_in_length,
        "imagination_horizon": args.horizon,
        "discount": config.discount,
        "td_lambda": config.td_lambda,
        "entropy_coef": config.entropy_coef,
        "learning_rates": {"model": config.model_learning_rate,
                           "actor": config.actor_learning_rate,
                           "value": config.value_learning_rate},
        "grad_clip_norm": config.grad_clip_norm,
        "peer_batch_sizes": {"autoencoder": config.autoencoder_batch_size,
                             "transformer": config.transformer_batch_size,
                             "actor_critic": config.actor_critic_batch_size},
        "batches_used": {"tokenizer": args.tokenizer_batch, "world_model": args.wm_batch,
                         "actor_critic": args.ac_batch, "imagine": args.imagine_batch},
        "seq_len": T,
        "params": {
            "tokenizer": nparams(agent.encoder, agent.decoder),
            "transformer": nparams(agent.transformer),
            "actor_critic": nparams(agent.cnn, agent.lstm, agent.actor_head,
                                    agent.critic_head),
        },
    }
    B_tok, B_wm, B_ac, B_im = (args.tokenizer_batch, args.wm_batch, args.ac_batch,
                               args.imagine_batch)
    K, L = config.tokens_per_frame, config.burn_in_length
    notes = {
        "tokenizer_update": (
            f"agent.update_autoencoder(frames ({B_tok},3,64,64) in [0,1]): encoder + VQ "
            f"(nearest of {config.vocab_size} codes), decoder, L1 + codebook + commitment"
            + (" + perceptual" if perc is not None else " (no perceptual term)")
            + ", one Adam step with grad-norm clipping"),
        "world_model_update": (
            f"agent.update_transformer(frames ({B_wm},{T + 1},3,64,64), one-hot actions "
            f"({B_wm},{T},{A}) float32, rewards ({B_wm},{T}) in {{-1,0,1}}, terminals "
            f"({B_wm},{T}) int64): no_grad encode of {B_wm * (T + 1)} frames, teacher-forced "
            f"GPT over {cfg_out['wm_sequence_tokens']} tokens (gradient checkpointing "
            f"{'on' if cfg_out['gradient_checkpointing'] else 'off'}), token CE + reward CE "
            "(3 classes) + termination CE, one AdamW step"),
        "actor_critic_update": (
            f"IRISTrainer.train_epoch phase 4 minus replay sampling: "
            f"agent.reconstruct(burn-in ({B_ac},{L},3,64,64)) re-encodes and decodes all "
            f"{B_ac * L} burn-in frames; agent.imagine_rollout(start ({B_ac},3,64,64), "
            f"horizon={args.horizon}, burn_in_frames=...) burns the LSTM in on them, then per "
            f"step decodes the tokens, acts (CNN+LSTM, no_grad) and generates {K} tokens with "
            "the KV-cached GPT; agent.update_actor_critic(traj) re-runs CNN+LSTM with grad over "
            f"the {args.horizon + 1} imagined frames from the burned-in state, lambda-returns, "
            "REINFORCE + entropy + value MSE, one Adam step"),
        "imagine": (
            f"agent.imagine_rollout(start ({B_im},3,64,64), horizon={args.horizon}, "
            "stop_on_termination=False), no burn-in: encode start frames, prime KV cache, "
            f"then {args.horizon} x (decode frame, policy act, {K + 1} single-position GPT "
            "forwards with token sampling), plus the final frame's decode"),
        "timing": (f"median of {args.repeats} call(s) after 1 warm-up; wall clock "
                   "(time.perf_counter); *_cpu_s is process CPU time"),
        "data": "random uint8 frames / 255 (as IRISTrainer.to_float_tensor); untrained weights",
    }
    out = {
        "peer": f"simulusion {getattr(simulusion, '__version__', '1.1.0')}",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "config": cfg_out,
        "tokenizer_update_s": med["tokenizer"],
        "world_model_update_s": med["world_model"],
        "actor_critic_update_s": med["actor_critic"],
        "imagine_s": med["imagine"],
        "imagined_steps_per_s": im_steps / med["imagine"],
        "cpu_s": {"tokenizer_update": med_cpu["tokenizer"],
                  "world_model_update": med_cpu["world_model"],
                  "actor_critic_update": med_cpu["actor_critic"],
                  "imagine": med_cpu["imagine"]},
        "actor_critic_parts_s": ac_breakdown,
        "imagined_lengths": {"actor_critic": ac_lengths, "imagine": im_lengths},
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
