"""I-JEPA's utilities: schedules, meters, logging, distributed helpers (distwm.utils.jepa_utils),
the augmentations (distwm.transforms) and the model / optimiser / checkpoint helpers
(distwm.helpers.jepa_helper)."""

from __future__ import annotations

import copy
import csv
import math
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image

from distwm.helpers import init_model, init_opt, load_checkpoint
from distwm.transforms import GaussianBlur, make_transforms
from distwm.transforms import tensor_ops as ops
from distwm.utils import distributed
from distwm.utils.jepa_utils import (
    AllGather,
    AllReduce,
    AllReduceSum,
    AverageMeter,
    CosineWDSchedule,
    CSVLogger,
    WarmupCosineSchedule,
    gpu_timer,
    grad_logger,
    init_distributed,
    trunc_normal_,
)


def _optimizer(groups=None):
    params = [torch.nn.Parameter(torch.zeros(2))]
    return torch.optim.AdamW(groups or [{"params": params}])


# -- schedules ------------------------------------------------------------------------------

def test_warmup_cosine_schedule_values():
    opt = _optimizer()
    sched = WarmupCosineSchedule(opt, warmup_steps=10, start_lr=0.1, ref_lr=1.0, T_max=110, final_lr=0.01)
    lrs = [sched.step() for _ in range(120)]
    assert lrs[0] == pytest.approx(0.1 + 0.9 * 1 / 10)  # step 1 of the warmup
    assert lrs[4] == pytest.approx(0.1 + 0.9 * 5 / 10)
    assert lrs[9] == pytest.approx(1.0)  # warmup done: the cosine starts at ref_lr
    assert lrs[59] == pytest.approx(0.01 + 0.99 * 0.5)  # half way through the cosine
    assert lrs[109] == pytest.approx(0.01)
    assert lrs[119] == pytest.approx(0.01)  # held at final_lr after T_max
    assert opt.param_groups[0]["lr"] == lrs[-1]
    assert all(a <= b for a, b in zip(lrs[:9], lrs[1:10]))
    # resuming restores the position
    again = WarmupCosineSchedule(_optimizer(), 10, 0.1, 1.0, 110, final_lr=0.01)
    again.load_state_dict(sched.state_dict())
    assert again.step() == pytest.approx(WarmupCosineSchedule.step(sched))


def test_cosine_wd_schedule_skips_excluded_groups():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = _optimizer([{"params": [a]}, {"params": [b], "WD_exclude": True, "weight_decay": 0.0}])
    sched = CosineWDSchedule(opt, ref_wd=0.04, T_max=100, final_wd=0.4)
    wds = [sched.step() for _ in range(120)]
    assert wds[49] == pytest.approx(0.04 + 0.36 * 0.5)
    assert wds[99] == pytest.approx(0.4) and wds[119] == pytest.approx(0.4)
    assert all(x <= y + 1e-12 for x, y in zip(wds, wds[1:]))  # rising 0.04 -> 0.4
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(0.4)
    assert opt.param_groups[1]["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="T_max"):
        CosineWDSchedule(opt, 0.1, T_max=0)


# -- meters, timers, logging ------------------------------------------------------------------

def test_average_meter_and_grad_logger():
    meter = AverageMeter()
    for value, n in ((1.0, 1), (3.0, 3), (-2.0, 1)):
        meter.update(value, n)
    assert (meter.val, meter.sum, meter.count, meter.min, meter.max) == (-2.0, 8.0, 5, -2.0, 3.0)
    assert meter.avg == pytest.approx(8.0 / 5)
    meter.reset()
    assert meter.count == 0 and meter.max == float("-inf")

    # names with 'qkv' mark the attention layers
    model = torch.nn.Sequential(OrderedDict(qkv_a=torch.nn.Linear(3, 4), mid=torch.nn.Linear(4, 4),
                                            qkv_b=torch.nn.Linear(4, 2)))
    model(torch.ones(5, 3)).sum().backward()
    stats = grad_logger(model.named_parameters())
    norms = [layer.weight.grad.norm().item() for layer in model]
    assert stats.count == 3 and stats.avg == pytest.approx(sum(norms) / 3)
    assert stats.max == pytest.approx(max(norms))
    assert stats.first_layer == pytest.approx(norms[0]) and stats.last_layer == pytest.approx(norms[2])
    plain = grad_logger(torch.nn.Linear(2, 2).named_parameters())  # no gradients, no qkv
    assert plain.count == 0 and plain.first_layer == plain.last_layer == 0.0


def test_gpu_timer_returns_the_result_and_milliseconds():
    result, elapsed = gpu_timer(lambda: sum(range(1000)))
    assert result == sum(range(1000)) and elapsed >= 0.0
    assert gpu_timer(lambda: 1, log_timings=False) == (1, -1.0)


def test_csv_logger_both_signatures(tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(path, ("%d", "epoch"), ("%.3f", "loss"))  # ijepa's form
    assert not path.exists()  # nothing written until the first row
    logger.log(0, 1, 0.5)
    logger.log(1, 2, 0.25)
    seed_form = CSVLogger(path, False, "", "torchwm", "", ("%d", "epoch"), ("%.3f", "loss"))
    seed_form.log(2, 3, 0.125)  # resuming into the file: no second header
    rows = list(csv.reader(path.open()))
    assert rows == [["epoch", "loss"], ["1", "0.500"], ["2", "0.250"], ["3", "0.125"]]
    with pytest.raises(ValueError, match="2 columns"):
        logger.log(3, 1)
    with pytest.raises(ValueError, match="pair"):
        CSVLogger(path, False, "", "p", "", "loss")


def test_trunc_normal_is_truncated():
    t = trunc_normal_(torch.empty(20000), std=1.0, a=-0.5, b=0.5)
    assert t.min() >= -0.5 and t.max() <= 0.5 and abs(t.mean().item()) < 0.02


# -- distributed ----------------------------------------------------------------------------

def test_collectives_are_the_identity_without_a_group():
    assert not distributed.is_active()
    x = torch.randn(3, 2, requires_grad=True)
    for fn in (AllGather, AllReduceSum, AllReduce):
        y = fn.apply(x)
        torch.testing.assert_close(y, x)
        (y * 2).sum().backward()
        torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))
        x.grad = None
    assert init_distributed() == (1, 0)
    with pytest.raises(ValueError, match="both or neither"):
        init_distributed(rank_and_world_size=(0, None))


def _rank_main(rank: int, port: int, results) -> None:
    try:
        torch.set_num_threads(1)
        os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
        assert init_distributed(port=port) == (2, rank)
        assert init_distributed() == (2, rank)  # an existing group is reused
        x = torch.full((2, 1), float(rank + 1), requires_grad=True)
        gathered = AllGather.apply(x)
        assert gathered.flatten().tolist() == [1.0, 1.0, 2.0, 2.0], gathered
        (gathered * torch.arange(4.0).view(4, 1)).sum().backward()
        # every rank's gradient of the gathered tensor summed, this rank's slice kept
        assert x.grad.flatten().tolist() == [2.0 * (2 * rank), 2.0 * (2 * rank + 1)], x.grad
        assert AllReduceSum.apply(x.detach()).flatten().tolist() == [3.0, 3.0]
        assert AllReduce.apply(x.detach()).flatten().tolist() == [1.5, 1.5]
        distributed.destroy_group()
        results.put((rank, "ok"))
    except BaseException as exc:  # reported to the test
        results.put((rank, repr(exc)))


def test_collectives_over_two_ranks():
    import multiprocessing

    context = multiprocessing.get_context("fork")  # no second torch import: fast
    port = int(distributed.free_address().rsplit(":", 1)[1])
    results = context.Queue()
    procs = [context.Process(target=_rank_main, args=(r, port, results)) for r in range(2)]
    for p in procs:
        p.start()
    try:
        outcome = dict(results.get(timeout=120) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert outcome == {0: "ok", 1: "ok"}


# -- transforms -----------------------------------------------------------------------------

def test_make_transforms_shapes_and_normalisation():
    torch.manual_seed(0)
    transform = make_transforms(crop_size=16, crop_scale=(0.3, 1.0), horizontal_flip=True, color_distortion=True,
                                gaussian_blur=True, normalization=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    uint8 = torch.randint(0, 256, (3, 24, 20), dtype=torch.uint8)
    for image in (uint8, uint8.float() / 255, Image.fromarray(uint8.permute(1, 2, 0).numpy()),
                  uint8.permute(1, 2, 0).numpy()):
        out = transform(image)
        assert out.shape == (3, 16, 16) and out.dtype == torch.float32
        assert out.min() >= (0 - 0.5) / 0.25 - 1e-5 and out.max() <= (1 - 0.5) / 0.25 + 1e-5
    batch = transform(torch.randint(0, 256, (4, 3, 24, 20), dtype=torch.uint8))
    assert batch.shape == (4, 3, 16, 16)
    plain = make_transforms(crop_size=8, crop_scale=(1.0, 1.0), normalization=((0.0,) * 3, (1.0,) * 3))
    constant = torch.full((3, 8, 8), 0.25)
    torch.testing.assert_close(plain(constant), constant)  # a full crop of a constant image


def test_random_resized_crop_box_respects_scale_and_ratio():
    torch.manual_seed(1)
    for _ in range(200):
        top, left, h, w = ops.random_resized_crop_box(40, 60, (0.3, 0.6), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 40 and 0 <= left and left + w <= 60
        assert 0.3 * 2400 * 0.9 <= h * w <= 0.6 * 2400 * 1.1
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1


def test_flip_crop_and_grayscale_behaviour():
    img = torch.arange(2 * 3 * 4.0).reshape(2, 3, 4) / 24
    assert torch.equal(ops.hflip(img)[:, :, 0], img[:, :, -1])
    crop = ops.resized_crop(img, 1, 1, 2, 2, (2, 2))
    torch.testing.assert_close(crop, img[:, 1:3, 1:3])  # same size: the crop itself
    rgb = torch.rand(3, 5, 5)
    gray = ops.rgb_to_grayscale(rgb)
    torch.testing.assert_close(gray[0], 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
    torch.testing.assert_close(ops.adjust_saturation(rgb, 0.0), gray.expand(3, -1, -1))
    torch.testing.assert_close(ops.adjust_hue(rgb, 0.0), rgb, atol=1e-5, rtol=0)
    red = torch.zeros(3, 1, 1)
    red[0] = 1.0
    torch.testing.assert_close(ops.adjust_hue(red, 1 / 3).flatten(), torch.tensor([0.0, 1.0, 0.0]))  # red -> green
    torch.testing.assert_close(ops.adjust_brightness(rgb, 0.5), rgb * 0.5)


def test_gaussian_blur_behaviour():
    img = torch.zeros(1, 21, 21)
    img[0, 10, 10] = 1.0
    blurred = ops.gaussian_blur(img, 2.0)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5)  # mass kept
    assert blurred[0, 10, 10] < 0.1 and blurred[0, 10, 10] == blurred.max()
    expected = math.exp(-0.5 * (2 / 2.0) ** 2) / math.exp(0)  # two pixels away, relative to the centre
    assert (blurred[0, 10, 12] / blurred[0, 10, 10]).item() == pytest.approx(expected, rel=1e-4)
    always, never = GaussianBlur(p=1.0, radius_min=1.0, radius_max=1.0), GaussianBlur(p=0.0)
    assert never(img) is img
    assert not torch.equal(always(img), img)
    pil = Image.fromarray((torch.rand(16, 16, 3) * 255).byte().numpy())
    out = always(pil)
    assert isinstance(out, Image.Image) and np.asarray(out).std() < np.asarray(pil).std()
    with pytest.raises(ValueError, match="radius_min"):
        GaussianBlur(p=0.5, radius_min=2.0, radius_max=1.0)


# -- helpers --------------------------------------------------------------------------------

def _tiny_model():
    return init_model("cpu", patch_size=8, model_name="vit_tiny", crop_size=16, pred_depth=1, pred_emb_dim=48)


def test_init_model_and_opt_param_groups():
    encoder, predictor = _tiny_model()
    assert encoder.patch_embed.num_patches == 4 and encoder.embed_dim == 192
    assert len(predictor.predictor_blocks) == 1 and predictor.predictor_embed.out_features == 48
    optimizer, scaler, scheduler, wd_scheduler = init_opt(
        encoder, predictor, iterations_per_epoch=10, start_lr=1e-4, ref_lr=1e-3, warmup=2, num_epochs=4,
        wd=0.04, final_wd=0.4)
    assert isinstance(optimizer, torch.optim.AdamW) and scaler is None
    groups = optimizer.param_groups
    assert len(groups) == 4
    enc_params = {id(p) for p in encoder.parameters()}
    assert {id(p) for p in groups[0]["params"]} | {id(p) for p in groups[2]["params"]} == enc_params
    assert all(p.dim() > 1 for p in groups[0]["params"] + groups[1]["params"])
    assert all(p.dim() == 1 for p in groups[2]["params"] + groups[3]["params"])
    assert groups[2]["WD_exclude"] and groups[3]["weight_decay"] == 0
    assert scheduler.warmup_steps == 20 and scheduler.T_max == int(1.25 * 4 * 10) - 20
    wd_scheduler.step()
    assert groups[0]["weight_decay"] > 0.04 and groups[2]["weight_decay"] == 0
    with pytest.raises(ValueError, match="vit_tiny"):
        init_model("cpu", model_name="vit_enormous")


def test_checkpoint_round_trip(tmp_path):
    encoder, predictor = _tiny_model()
    target = copy.deepcopy(encoder)
    with torch.no_grad():
        for p in target.parameters():
            p.add_(1.0)
    optimizer, _, _, _ = init_opt(encoder, predictor, 2, 1e-4, 1e-3, 1, 2)
    x = torch.rand(2, 3, 16, 16)
    loss = predictor(encoder(x, [torch.tensor([[0, 1], [2, 3]])]), [torch.tensor([[0, 1], [2, 3]])],
                     [torch.tensor([[2], [0]])]).square().mean()
    loss.backward()
    optimizer.step()
    path = tmp_path / "jepa-latest.pth.tar"
    torch.save({"encoder": encoder.state_dict(), "predictor": predictor.state_dict(),
                "target_encoder": target.state_dict(), "opt": optimizer.state_dict(), "scaler": None,
                "epoch": 3, "loss": loss.item()}, path)
    enc2, pred2 = _tiny_model()
    target2 = copy.deepcopy(enc2)
    opt2, _, _, _ = init_opt(enc2, pred2, 2, 1e-4, 1e-3, 1, 2)
    *_, epoch = load_checkpoint("cpu", path, enc2, pred2, target2, opt2, None)
    assert epoch == 3
    for a, b in ((encoder, enc2), (predictor, pred2), (target, target2)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name
    assert opt2.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint("cpu", tmp_path / "missing.pth", enc2, pred2, None, opt2, None)
    torch.save({"encoder": encoder.state_dict(), "epoch": 1}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="lacks"):
        load_checkpoint("cpu", tmp_path / "partial.pth", enc2, pred2, None, opt2, None)
