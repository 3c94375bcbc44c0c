#!/usr/bin/env python
"""I-JEPA training throughput in the peer library simulusion 1.1.0 (CPU), for comparison with
distwm (``scripts/bench_jepa.py`` runs it, one round per call, and prints the ratios).

Standalone: run it with the PEER's interpreter; it imports nothing from distwm (standard library,
torch and simulusion only)::

    OMP_WAIT_POLICY=PASSIVE .peer-venv/bin/python scripts/bench_jepa_peer.py \\
        --config '{...}' --inputs inputs.pt

The peer's ``JEPAAgent`` is a launcher without a model (it writes a config and calls
``train_jepa.main``), and ``simulusion.training.train_jepa`` cannot be imported in this venv
(its data-set modules need ``torchvision.datasets``, and torchvision 0.28 fails to load against
torch 2.13: ``operator torchvision::nms does not exist``). So this script builds the run from
the peer's own building blocks, as ``train_jepa.main`` does: ``helpers.jepa_helper.init_model``
(encoder + predictor), ``copy.deepcopy(encoder)`` (target encoder, no grad), ``init_opt``
(AdamW over its four parameter groups, ``WarmupCosineSchedule``, ``CosineWDSchedule``), the
momentum generator of ``main``, and then runs the body of ``main``'s inner loop, copied from
``train_jepa.py`` (``load_imgs``, the mask meters, ``train_step`` under ``gpu_timer``):
schedulers step; target encoder forward under no_grad, ``F.layer_norm``, ``apply_masks``,
``repeat_interleave_batch``; ``encoder(imgs, masks_enc)`` and ``predictor(z, masks_enc,
masks_pred)``; the loss through ``AllReduce``; backward; ``optimizer.step()``;
``grad_logger(encoder.named_parameters())``; ``optimizer.zero_grad()``; the fused
``torch._foreach_mul_/_foreach_add_`` EMA update; ``float(loss)``. Left out: the CSV / stdout
logging of ``log_stats`` and the DataLoader. The loss is ``F.smooth_l1_loss`` (what
``build_loss_fn("smooth_l1")`` returns, the reference code's loss and distwm's; the peer's
default ``loss_type`` is ``"l2"``, ``F.mse_loss``, the same cost).

``simulusion.utils.utils`` (which the peer's ``vit`` module imports for ``apply_masks``)
imports ``torchvision.utils`` at the top; when torchvision fails to import, a stand-in module
with ``make_grid`` / ``save_image`` (raising if called) is put into ``sys.modules``. Nothing
timed uses it.

``--inputs`` (``torch.save`` of a dict, loaded with ``weights_only=True``): ``images`` ``(B, 3,
S, S)`` (already normalised views), ``masks_enc`` / ``masks_pred`` (a list of mask sets, each
a list of ``(B, K)`` index tensors, drawn by distwm's collator and shared by both sides; call
``i`` of the timed function uses set ``i mod len``) and ``encoder`` / ``predictor`` state dicts
(distwm's initial weights, loaded with ``strict=True`` so both sides start from the same
networks; when they do not fit the peer's own initialisation stays and ``notes`` says so).

Figures: ``train_step`` (one warm-up call, then ``--repeats`` timed calls: wall and process CPU
time, and the loss of every call, so the caller can check both sides compute the same thing)
and ``masks``: the peer's multiblock ``MaskCollator.__call__`` on a batch of ``B`` samples with
the same settings (what its DataLoader workers run per batch). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
import types


def _ensure_torchvision_utils() -> str:
    try:
        import torchvision.utils  # noqa: F401
        return "importable"
    except Exception as exc:  # noqa: BLE001
        status = f"import fails ({type(exc).__name__}: {str(exc)[:80]}); stand-in torchvision.utils"
    for name in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        del sys.modules[name]

    def _unavailable(*_a, **_k):
        raise RuntimeError("torchvision stand-in (bench_jepa_peer.py): not available")

    tv, utils = types.ModuleType("torchvision"), types.ModuleType("torchvision.utils")
    utils.make_grid = utils.save_image = _unavailable
    tv.utils, tv.__stand_in__ = utils, True
    sys.modules["torchvision"], sys.modules["torchvision.utils"] = tv, utils
    return status


def timed(fn, repeats: int):
    """One warm-up call, then ``repeats`` timed ones: (walls, cpus, outputs of all calls)."""
    outs = [fn()]
    walls, cpus = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        outs.append(fn())
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return walls, cpus, outs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True, help="JSON: sizes, masks, schedule (bench_jepa.py)")
    p.add_argument("--inputs", required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)  # keep stdout for the JSON
    tv_status = _ensure_torchvision_utils()

    import simulusion
    import torch
    import torch.nn.functional as F
    from simulusion.helpers.jepa_helper import init_model, init_opt
    from simulusion.masks.multiblock import MaskCollator as MBMaskCollator
    from simulusion.utils.jepa_utils import (
        AllReduce,
        AverageMeter,
        gpu_timer,
        grad_logger,
        repeat_interleave_batch,
    )
    from simulusion.utils.utils import apply_masks

    logging.getLogger().setLevel(logging.WARNING)  # init_model logs the whole encoder at INFO
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    c = json.loads(args.config)
    inputs = torch.load(args.inputs, weights_only=True)
    device = torch.device("cpu")
    use_bfloat16 = False
    loss_fn = F.smooth_l1_loss  # build_loss_fn("smooth_l1")

    # -- as train_jepa.main: networks, target encoder, optimiser, schedules, momentum generator
    encoder, predictor = init_model(device=device, patch_size=c["patch_size"], crop_size=c["crop_size"],
                                    pred_depth=c["pred_depth"], pred_emb_dim=c["pred_emb_dim"],
                                    model_name=c["model_name"])
    notes = {}
    try:
        encoder.load_state_dict(inputs["encoder"], strict=True)
        predictor.load_state_dict(inputs["predictor"], strict=True)
        notes["weights"] = "distwm's initial weights (strict load)"
    except (RuntimeError, KeyError) as exc:
        notes["weights"] = f"the peer's own init_model weights (distwm's did not load: {str(exc)[:200]})"
    target_encoder = copy.deepcopy(encoder)
    for p_ in target_encoder.parameters():
        p_.requires_grad = False
    ipe, num_epochs, ipe_scale = c["total_updates"], 1, 1.0
    optimizer, _scaler, scheduler, wd_scheduler = init_opt(
        encoder=encoder, predictor=predictor, wd=c["weight_decay"], final_wd=c["final_weight_decay"],
        start_lr=c["start_lr"], ref_lr=c["lr"], final_lr=c["final_lr"], iterations_per_epoch=ipe,
        warmup=c["warmup_fraction"], num_epochs=num_epochs, ipe_scale=ipe_scale,
        use_bfloat16=use_bfloat16)
    ema = c["ema"]
    momentum_scheduler = (ema[0] + i * (ema[1] - ema[0]) / (ipe * num_epochs * ipe_scale)
                          for i in range(int(ipe * num_epochs * ipe_scale) + 1))
    is_distributed = False
    loss_meter, maskA_meter, maskB_meter, time_meter = (AverageMeter(), AverageMeter(),
                                                        AverageMeter(), AverageMeter())
    images = inputs["images"]
    mask_sets = list(zip(inputs["masks_enc"], inputs["masks_pred"]))
    calls = [0]

    def iteration() -> float:
        """The body of train_jepa.main's ``for itr, (udata, masks_enc, masks_pred)`` loop,
        without log_stats (copied from simulusion 1.1.0's train_jepa.py)."""
        udata_imgs, masks_enc, masks_pred = images, *mask_sets[calls[0] % len(mask_sets)]
        calls[0] += 1

        def load_imgs() -> tuple:
            imgs = udata_imgs.to(device, non_blocking=True)
            masks_1 = [u.to(device, non_blocking=True) for u in masks_enc]
            masks_2 = [u.to(device, non_blocking=True) for u in masks_pred]
            return (imgs, masks_1, masks_2)

        imgs, masks_enc, masks_pred = load_imgs()
        maskA_meter.update(len(masks_enc[0][0]))
        maskB_meter.update(len(masks_pred[0][0]))

        def train_step() -> tuple:
            _new_lr = scheduler.step()
            _new_wd = wd_scheduler.step()

            def forward_target() -> torch.Tensor:
                with torch.no_grad():
                    h = target_encoder(imgs)
                    h = F.layer_norm(h, (h.size(-1),))
                    B = len(h)
                    h = apply_masks(h, masks_pred)
                    h = repeat_interleave_batch(h, B, repeat=len(masks_enc))
                    return h

            def forward_context() -> torch.Tensor:
                z = encoder(imgs, masks_enc)
                z = predictor(z, masks_enc, masks_pred)
                return z

            def reduced_loss(z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
                loss_val = loss_fn(z, h)
                loss_val = AllReduce.apply(loss_val)
                return loss_val

            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bfloat16):
                h = forward_target()
                z = forward_context()
                loss = reduced_loss(z, h)

            loss.backward()
            optimizer.step()
            enc_for_log = encoder.module if is_distributed else encoder
            grad_stats = grad_logger(enc_for_log.named_parameters())
            optimizer.zero_grad()

            with torch.no_grad():
                m = next(momentum_scheduler)
                target_params = list(target_encoder.parameters())
                online_params = [p.detach() for p in encoder.parameters()]
                torch._foreach_mul_(target_params, m)
                torch._foreach_add_(target_params, online_params, alpha=1.0 - m)

            return (float(loss.detach()), _new_lr, _new_wd, grad_stats)

        (loss, _new_lr, _new_wd, _grad_stats), etime = gpu_timer(train_step)
        loss_meter.update(loss)
        time_meter.update(etime)
        return loss

    walls, cpus, losses = timed(iteration, args.repeats)
    collator = MBMaskCollator(input_size=c["crop_size"], patch_size=c["patch_size"],
                              pred_mask_scale=tuple(c["pred_mask_scale"]),
                              enc_mask_scale=tuple(c["enc_mask_scale"]),
                              aspect_ratio=tuple(c["aspect_ratio"]), nenc=c["num_enc_masks"],
                              npred=c["num_pred_masks"], allow_overlap=c["allow_overlap"],
                              min_keep=c["min_keep"])
    samples = [torch.zeros(1) for _ in range(len(images))]
    mask_walls, mask_cpus, _ = timed(lambda: collator(samples), max(5, 3 * args.repeats))
    print(json.dumps({
        "train_step_walls": walls, "train_step_cpus": cpus, "losses": losses,
        "masks_walls": mask_walls, "masks_cpus": mask_cpus,
        "torch": torch.__version__, "simulusion": getattr(simulusion, "__version__", "?"),
        "notes": {**notes, "torchvision": tv_status,
                  "loop": "train_jepa.main's inner-loop body (train_step under gpu_timer, meters; "
                          "no log_stats), smooth-L1 loss"}}))


if __name__ == "__main__":
    main()
