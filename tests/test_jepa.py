"""I-JEPA: config, the update (EMA target, masks, loss), the linear probe, the dataset-trained
Trainable (state, report, errors), the seed's entry points and the inference operator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distwm.configs.jepa_config import JEPA_PRESETS, JEPAConfig, jepa_preset
from distwm.models.jepa.model import ema_momentum
from distwm.models.jepa.probe import (cross_validated_accuracy, fit_ridge_classifier, fold_indices,
                                      probe_accuracy, select_penalty)
from distwm.models.jepa.trainable import JEPATrainable

INFO = {"kind": "images", "frame_shape": [3, 16, 16], "num_classes": 2, "size": 64}


def tiny(**overrides) -> JEPAConfig:
    return jepa_preset("tiny", **overrides)


def images(n: int = 8, seed: int = 0, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def two_classes(n: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """Bright left half (class 0) or bright right half (class 1), with noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    x = rng.integers(0, 60, (n, 3, 16, 16)).astype(np.int64)
    for i, label in enumerate(labels):
        x[i, :, :, 8 * label:8 * label + 8] += 180
    return {"image": x.clip(0, 255).astype(np.uint8), "label": labels.astype(np.int64)}


def batch(x: np.ndarray | None = None) -> dict:
    x = images() if x is None else x
    return {"images": {"image": x, "label": np.zeros(len(x), np.int64)}}


# -- config -------------------------------------------------------------------------------------

def test_config_defaults_are_the_papers_and_round_trip():
    c = JEPAConfig()
    assert (c.model_name, c.patch_size, c.crop_size, c.pred_depth, c.pred_emb_dim) == \
        ("vit_huge", 14, 224, 12, 384)
    assert (c.num_pred_masks, c.pred_mask_scale, c.aspect_ratio) == (4, (0.15, 0.2), (0.75, 1.5))
    assert (c.num_enc_masks, c.enc_mask_scale, c.min_keep, c.allow_overlap) == (1, (0.85, 1.0), 10, False)
    assert (c.weight_decay, c.final_weight_decay, c.ema) == (0.04, 0.4, (0.996, 1.0))
    nested = c.to_dict()
    assert list(nested) == ["meta", "data", "mask", "optimization", "logging", "probe"]
    assert nested["mask"]["pred_mask_scale"] == [0.15, 0.2]
    assert JEPAConfig.from_dict(nested) == c
    assert JEPAConfig.from_yaml(c.to_yaml()) == c
    # ijepa's YAML layout with only some sections, and a flat dict of field names
    partial = JEPAConfig.from_dict({"meta": {"model_name": "vit_base", "pred_depth": 6},
                                    "optimization": {"epochs": 3}})
    assert (partial.model_name, partial.pred_depth, partial.epochs, partial.lr) == ("vit_base", 6, 3, 1e-3)
    assert JEPAConfig.from_dict({"epochs": 3}).epochs == 3
    assert set(JEPA_PRESETS) >= {"tiny", "digits"}
    assert (tiny().crop_size, tiny().patch_size, tiny().embed_dim, tiny().depth) == (16, 4, 32, 1)


@pytest.mark.parametrize("fields, match", [
    ({"patch_size": 5}, "multiple of patch_size"),
    ({"model_name": "vit_enormous"}, "not one of"),
    ({"embed_dim": 32}, "all three or none"),
    ({"probe_train_fraction": 1.0}, "probe_train_fraction"),
    ({"pred_mask_scale": (0.3, 0.2)}, "pred_mask_scale"),
    ({"ema": (0.996, 1.2)}, "ema"),
    ({"lr": 0.0}, "lr"),
    ({"batch_size": 0}, "batch_size"),
])
def test_config_rejects_bad_values(fields, match):
    with pytest.raises(ValueError, match=match):
        JEPAConfig(**fields)


def test_config_rejects_unknown_sections_and_fields():
    with pytest.raises(ValueError, match="unknown section 'metta'"):
        JEPAConfig.from_dict({"metta": {}, "meta": {}})
    with pytest.raises(ValueError, match="Did you mean 'model_name'"):
        JEPAConfig.from_dict({"meta": {"model_nam": "vit_base"}})
    with pytest.raises(ValueError, match="unknown JEPA preset"):
        jepa_preset("enormous")


# -- the update ---------------------------------------------------------------------------------

def test_loss_decreases_on_a_tiny_image_set():
    trainable = JEPATrainable.from_config(tiny(lr=2e-3, start_lr=2e-3, warmup=0.0), INFO)
    held = {"image": images(16, seed=1), "label": np.zeros(16, np.int64)}
    before = trainable.report(held)["scalars"]["loss"]
    losses = [trainable.update(batch(images(8, seed=k % 2)))["loss"] for k in range(12)]
    after = trainable.report(held)["scalars"]["loss"]
    assert all(np.isfinite(losses))
    assert after < 0.8 * before, (before, after)
    assert np.mean(losses[-4:]) < np.mean(losses[:4])


def test_target_encoder_gets_no_gradient_and_moves_by_ema_only():
    trainable = JEPATrainable.from_config(tiny(), INFO)
    model = trainable.model
    assert not any(p.requires_grad for p in model.target_encoder.parameters())
    # at the start the target is a copy of the context encoder
    for q, k in zip(model.encoder.parameters(), model.target_encoder.parameters()):
        torch.testing.assert_close(q, k)
    trainable.update(batch())
    old = [p.detach().clone() for p in model.target_encoder.parameters()]
    metrics = trainable.update(batch())
    m = metrics["ema_momentum"]
    assert m == pytest.approx(ema_momentum(1, trainable.total_updates, (0.996, 1.0)))
    moved = False
    for q, k, k_old in zip(model.encoder.parameters(), model.target_encoder.parameters(), old):
        assert k.grad is None
        torch.testing.assert_close(k, m * k_old + (1 - m) * q, rtol=0, atol=1e-6)
        moved = moved or not torch.equal(k, k_old)
    assert moved


def test_momentum_schedule_rises_linearly_to_one():
    assert ema_momentum(0, 100, (0.996, 1.0)) == pytest.approx(0.996)
    assert ema_momentum(50, 100, (0.996, 1.0)) == pytest.approx(0.998)
    assert ema_momentum(100, 100, (0.996, 1.0)) == pytest.approx(1.0)
    assert ema_momentum(500, 100, (0.996, 1.0)) == pytest.approx(1.0)


def test_lr_and_weight_decay_follow_their_schedules():
    trainable = JEPATrainable.from_config(tiny(total_updates=20, epochs=10, warmup=5), INFO)
    metrics = [trainable.update(batch()) for _ in range(20)]
    lrs = [m["learning_rate"] for m in metrics]
    wds = [m["weight_decay"] for m in metrics]
    peak = int(np.argmax(lrs))
    # warmup: 5 of 10 epochs = 10 updates, then the cosine
    assert peak == 9 and lrs[0] < lrs[5] < lrs[peak] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-6) and all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))
    assert wds[0] > 0.04 and wds[-1] == pytest.approx(0.4) and wds == sorted(wds)
    # biases and norms are excluded from weight decay
    groups = trainable.learner.optimizer.param_groups
    assert [g.get("WD_exclude", False) for g in groups] == [False, False, True, True]
    assert all(g["weight_decay"] == 0 for g in groups[2:])


def test_masks_predictor_shape_and_loss_only_at_target_blocks():
    trainable = JEPATrainable.from_config(tiny(), INFO)
    model = trainable.model
    views, masks_enc, masks_pred = trainable.training_views(
        torch.from_numpy(images()).float() / 255, update=0)
    assert views.shape == (8, 3, 16, 16)
    assert len(masks_enc) == 1 and len(masks_pred) == 4
    k_pred = masks_pred[0].shape[1]
    # every target block has the same size across the batch; the context avoids the targets
    for b in range(8):
        context = set(masks_enc[0][b].tolist())
        assert not context & set(torch.cat([m[b] for m in masks_pred]).tolist())
    z = model.predictions(views, masks_enc, masks_pred)
    assert z.shape == (4 * 8, k_pred, 32)
    # the targets are the layer-normed target features at the target patches
    features = torch.randn(8, 16, 32)

    class Fixed(torch.nn.Module):
        def __init__(self, h):
            super().__init__()
            self.h = h

        def forward(self, x, masks=None):
            return self.h

    model.target_encoder = Fixed(features)
    h = model.targets(views, masks_enc, masks_pred)
    normed = F.layer_norm(features, (32,))
    torch.testing.assert_close(h[8 + 3], normed[3, masks_pred[1][3]])
    loss = model.loss(views, masks_enc, masks_pred)
    targets = set(torch.cat(masks_pred, dim=1)[0].tolist())
    outside = next(i for i in range(16) if i not in targets)
    changed = features.clone()
    changed[0, outside] += 5.0 * torch.randn(32)  # a patch of image 0 outside its targets
    model.target_encoder = Fixed(changed)
    torch.testing.assert_close(model.loss(views, masks_enc, masks_pred), loss)
    changed = features.clone()
    changed[0, masks_pred[0][0, 0]] += 5.0 * torch.randn(32)
    model.target_encoder = Fixed(changed)
    assert not torch.allclose(model.loss(views, masks_enc, masks_pred), loss)


def test_every_rank_draws_the_same_block_sizes(monkeypatch):
    from distwm.utils import distributed

    x = torch.from_numpy(images()).float() / 255
    draws = {}
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        trainable = JEPATrainable.from_config(tiny(), INFO)
        draws[rank] = [trainable.training_views(x, update=k) for k in range(4)]
    for (v0, e0, p0), (v1, e1, p1) in zip(draws[0], draws[1]):
        assert [m.shape for m in p0] == [m.shape for m in p1]  # same target-block size
        assert not torch.equal(v0, v1)  # but their own crops


# -- the probe -----------------------------------------------------------------------------------

def test_probe_separates_linearly_separable_features():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 5, generator=g, dtype=torch.float64) + 6.0 * F.one_hot(y, 5).double()
    assert probe_accuracy(x[:30], y[:30], x[30:], y[30:], 3) == 1.0
    noise = torch.randn(60, 5, generator=g, dtype=torch.float64)
    assert probe_accuracy(noise[:30], y[:30], noise[30:], y[30:], 3) < 0.7
    # the ridge classifier solves the penalised least squares onto the one-hot labels
    (weight, bias), = fit_ridge_classifier(x, y, 3, (0.1,))
    z = torch.cat([x, torch.ones(60, 1, dtype=torch.float64)], dim=1)
    target = F.one_hot(y, 3).double()
    reg = torch.diag(torch.tensor([0.1 * 60] * 5 + [0.0], dtype=torch.float64))
    centred = z - torch.cat([x.mean(0), torch.zeros(1, dtype=torch.float64)])
    solution = torch.linalg.solve(centred.T @ centred + reg, centred.T @ (target - target.mean(0)))
    torch.testing.assert_close(weight, solution[:5])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        probe_accuracy(x[:30], y[:30] + 1, x[30:], y[30:], 3)


def test_probe_penalty_search_reaches_nearly_collinear_features():
    # the label lives in the 1e-4 difference of two nearly equal features: only an almost
    # unpenalised fit finds it (a penalty of 1e-5, the old grid's smallest, does not)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(120) % 2
    sign = (2 * y - 1).double()[:, None]
    z = torch.randn(120, 8, generator=g, dtype=torch.float64)
    x = torch.cat([z[:, :1] + 1e-4 * sign, z[:, :1] - 1e-4 * sign, z[:, 1:]], dim=1)
    assert select_penalty(x[:60], y[:60], 2) < 1e-5
    assert probe_accuracy(x[:60], y[:60], x[60:], y[60:], 2) == 1.0
    assert probe_accuracy(x[:60], y[:60], x[60:], y[60:], 2, penalty=1e-5) < 0.8


def test_cross_validated_probe_tests_every_row_once_on_a_probe_that_never_saw_it():
    parts = fold_indices(23, 5, seed=3)
    assert sorted(torch.cat(parts).tolist()) == list(range(23))
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
    assert not torch.equal(torch.cat(parts), torch.cat(fold_indices(23, 5, seed=4)))
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 5, generator=g, dtype=torch.float64) + 6.0 * F.one_hot(y, 5).double()
    assert cross_validated_accuracy(x, y, 3, folds=5) == 1.0
    # features unrelated to the labels: near chance on rows the probe did not see
    noise = torch.randn(60, 5, generator=g, dtype=torch.float64)
    assert cross_validated_accuracy(noise, y, 3, folds=5) < 0.7
    # the accuracy is the mean of the per-fold test accuracies, weighted by fold size
    xn = x + 3.0 * noise
    parts = fold_indices(60, 4)
    manual = 0.0
    for k, held in enumerate(parts):
        kept = torch.cat([q for j, q in enumerate(parts) if j != k])
        manual += probe_accuracy(xn[kept], y[kept], xn[held], y[held], 3) * len(held) / 60
    assert 0.4 < manual < 1.0
    assert cross_validated_accuracy(xn, y, 3, folds=4) == pytest.approx(manual)
    # low shot: each fold alone is the training rows, the other three folds its test rows
    manual = 0.0
    for k, part in enumerate(parts):
        rest = torch.cat([q for j, q in enumerate(parts) if j != k])
        manual += probe_accuracy(xn[part], y[part], xn[rest], y[rest], 3) * len(rest) / (3 * 60)
    assert cross_validated_accuracy(xn, y, 3, folds=4, low_shot=True) == pytest.approx(manual)
    assert cross_validated_accuracy(x, y, 3, folds=4, low_shot=True) == 1.0
    for bad in (1, 61, 2.0):
        with pytest.raises(ValueError, match="folds"):
            cross_validated_accuracy(x, y, 3, folds=bad)


def test_report_probe_cross_validates_over_the_batch_with_probe_folds():
    batch = two_classes()
    folded = JEPATrainable.from_config(tiny(probe_every=0, probe_folds=4), INFO).report(batch)["scalars"]
    # every image is tested once, each probe fitted on the other three folds
    assert (folded["probe/train_images"], folded["probe/test_images"]) == (30, 40)
    assert folded["probe/accuracy"] >= 0.95
    # and the low-shot probe, fitted on one fold (10 images) at a time, for both encoders
    assert folded["probe/low_shot_train_images"] == 10
    assert folded["probe/low_shot_accuracy"] >= 0.9
    assert 0.0 <= folded["probe/random_encoder_low_shot_accuracy"] <= 1.0
    # the split protocol tests only its test share
    split = JEPATrainable.from_config(tiny(probe_every=0), INFO).report(batch)["scalars"]
    assert split["probe/test_images"] == 20 and "probe/low_shot_accuracy" not in split
    with pytest.raises(ValueError, match="probe_folds"):
        tiny(probe_folds=1)


def test_report_probes_two_separable_classes_against_a_random_encoder():
    trainable = JEPATrainable.from_config(tiny(probe_every=100), INFO)
    report = trainable.report(two_classes())
    scalars = report["scalars"]
    assert scalars["probe/accuracy"] >= 0.95
    assert 0.0 <= scalars["probe/random_encoder_accuracy"] <= 1.0
    assert scalars["probe/feature_std"] > 0 and scalars["probe/random_encoder_feature_std"] > 0
    assert scalars["probe/train_images"] + scalars["probe/test_images"] == 40
    assert {"loss", "updates", "learning_rate"} <= set(scalars)
    image = report["images"]["masks"]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.shape[0] >= 128
    # the probe runs again only after probe_every updates; the other scalars every time
    again = trainable.report(two_classes())["scalars"]
    assert "probe/accuracy" not in again and "loss" in again
    # a batch that carries training rows: the probe is fitted on them and tested on the others
    fit = two_classes(30, seed=1)
    every = JEPATrainable.from_config(tiny(probe_every=0), INFO)
    carried = every.report({**two_classes(), "train_image": fit["image"],
                            "train_label": fit["label"]})["scalars"]
    assert (carried["probe/train_images"], carried["probe/test_images"]) == (30, 40)
    assert carried["probe/accuracy"] >= 0.95
    # the random encoder has this architecture and stays fixed
    assert type(trainable.random_encoder()) is type(trainable.model.target_encoder)
    assert trainable.random_encoder() is trainable.random_encoder()


# -- state and errors ----------------------------------------------------------------------------

def test_state_round_trip_continues_identically(tmp_path):
    from distwm.utils.checkpoint import load_file, save_file

    trainable = JEPATrainable.from_config(tiny(), INFO)
    for _ in range(2):
        trainable.update(batch())
    path = save_file(trainable.state_dict(), tmp_path / "jepa.pt")
    restored = JEPATrainable.from_state(load_file(path, JEPATrainable.CHECKPOINT_FORMAT, "jepa"))
    assert restored.updates == 2 and restored.total_updates == trainable.total_updates
    a, b = trainable.update(batch()), restored.update(batch())
    assert a == b
    for p, q in zip(trainable.model.parameters(), restored.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    other = JEPATrainable.from_config(tiny(embed_dim=16, pred_emb_dim=16), INFO)
    with pytest.raises(ValueError, match="embed_dim: checkpoint 32 vs agent 16"):
        other.load_state_dict(trainable.state_dict())
    with pytest.raises(ValueError, match="not a jepa checkpoint"):
        trainable.load_state_dict({**trainable.state_dict(), "format": "distwm.genie/1"})


def test_data_spec_and_bad_batches():
    trainable = JEPATrainable.from_config(tiny(), INFO)
    (sample,) = trainable.data_spec().samples
    assert (sample.name, sample.batch_size, sample.seq_len) == ("images", 8, 1)
    with pytest.raises(ValueError, match="no 'image'"):
        trainable.update({"images": {"label": np.zeros(8)}})
    with pytest.raises(ValueError, match="seq_len 1"):
        trainable.update({"images": {"image": np.zeros((8, 4, 3, 16, 16), np.uint8)}})
    with pytest.raises(ValueError, match="C 1 or 3"):
        trainable.update({"images": {"image": np.zeros((8, 4, 16, 16), np.uint8)}})
    with pytest.raises(ValueError, match="sample 'images'"):
        trainable.update({"clips": {"image": images()}})
    # grey images and (B, 1, C, H, W) single-frame clips are accepted
    grey = images()[:, :1]
    assert np.isfinite(trainable.update({"images": {"image": grey[:, None]}})["loss"])
    assert trainable.updates == 1


def test_from_config_checks_the_data_set():
    with pytest.raises(ValueError, match="trains on images"):
        JEPATrainable.from_config(tiny(), {"kind": "video", "frame_shape": [3, 16, 16]})
    with pytest.raises(ValueError, match="4 channels"):
        JEPATrainable.from_config(tiny(), {"kind": "images", "frame_shape": [4, 16, 16]})
    with pytest.raises(ValueError, match="total_updates"):
        JEPATrainable.from_config(tiny(total_updates=None), {"kind": "images"})
    sized = JEPATrainable.from_config(tiny(total_updates=None, epochs=3, batch_size=8),
                                      {**INFO, "size": 100})
    assert sized.total_updates == 3 * (100 // 8)
    with pytest.raises(ValueError, match="JEPAConfig"):
        JEPATrainable(object(), 10)


# -- the seed's entry points ---------------------------------------------------------------------

def test_jepa_agent_trains_on_digits_and_resumes(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from distwm.models.jepa_agent import JEPAAgent
    from distwm.training.train_jepa import main

    agent = JEPAAgent(tiny(total_updates=4, probe_size=40), logdir=str(tmp_path))
    summary = agent.train()
    assert summary["updates"] == 4 and agent.trainable.updates == 4
    assert {"probe/accuracy", "probe/random_encoder_accuracy"} <= set(summary)
    assert "updates/s" in capsys.readouterr().out
    files = {p.name for p in tmp_path.iterdir()}
    assert {"jepa-latest.pth.tar", "jepa-masks.png", "jepa-probe.jsonl", "jepa_r0.csv",
            "params-ijepa.yaml"} <= files
    assert "probe/accuracy" in json.loads((tmp_path / "jepa-probe.jsonl").read_text().splitlines()[-1])
    # the seed's main on ijepa's nested dict, resuming from the latest checkpoint
    args = tiny(total_updates=6, probe_size=40, folder=str(tmp_path)).to_dict()
    resumed = main(args, resume_preempt=True)
    assert resumed["updates"] == 6
    with pytest.raises(ValueError, match="Invalid|Unknown config field"):
        JEPAAgent(tiny(), not_a_field=1)


def test_main_rejects_an_unknown_dataset(tmp_path):
    from distwm.training.train_jepa import main

    with pytest.raises(ValueError, match="dataset 'mnist' is not one of"):
        main(tiny(dataset="mnist", folder=str(tmp_path)).to_dict())


# -- the inference operator ----------------------------------------------------------------------

def test_jepa_operator_masks_and_normalises():
    from distwm.inference.operators.jepa_operator import JEPAOperator

    op = JEPAOperator(image_size=32, patch_size=8, mask_ratio=0.75, seed=0)
    out = op.process({"images": [images(2, size=20)[0].transpose(1, 2, 0), torch.rand(3, 40, 40)]})
    assert out["images"].shape == (2, 3, 32, 32)
    assert out["mask"].shape == (2, 16) and out["mask"].sum(1).tolist() == [12, 12]
    assert out["target_indices"].shape == (2, 12) and out["context_indices"].shape == (2, 4)
    assert not set(out["context_indices"][0].tolist()) & set(out["target_indices"][0].tolist())
    # (C, H, W) and grey arrays, a batch of RGBA tensors
    chw = op.process({"images": images(1, size=32)[0]})["images"]
    hwc = op.process({"images": images(1, size=32)[0].transpose(1, 2, 0)})["images"]
    torch.testing.assert_close(chw, hwc)
    assert op.process({"images": np.zeros((32, 32), np.uint8)})["images"].shape == (1, 3, 32, 32)
    assert op.process({"images": torch.rand(2, 4, 32, 32)})["images"].shape == (2, 3, 32, 32)
    given = torch.zeros(16, dtype=torch.bool)
    given[:4] = True
    fixed = op.process({"images": torch.rand(3, 3, 32, 32), "mask": given})
    assert fixed["target_indices"].tolist() == [[0, 1, 2, 3]] * 3
    with pytest.raises(ValueError, match="'images' key"):
        op.process({"image": torch.rand(3, 32, 32)})
    with pytest.raises(ValueError, match=r"\(16,\)"):
        op.process({"images": torch.rand(3, 32, 32), "mask": torch.zeros(15, dtype=torch.bool)})
    with pytest.raises(ValueError, match="multiple of patch_size"):
        JEPAOperator(image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="mask_ratio"):
        JEPAOperator(mask_ratio=1.0)
