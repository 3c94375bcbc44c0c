"""The in-run linear probe of I-JEPA: how linearly separable a frozen encoder's features are.

The paper (Assran et al. 2023, Sec. 5 and Appendix A) evaluates the *target* encoder with a
linear classifier on its average-pooled patch features (ImageNet-1K, cyanure's logistic
regression with a tuned penalty); ijepa's code ships no evaluation. Here: the frozen encoder's
patch features ``(N, patches, D)`` are averaged over the patches and standardised with the
training split's mean and standard deviation; a ridge classifier (least squares onto the
one-hot labels with an L2 penalty, solved in closed form in float64 through one SVD) is fitted
on the training split and the probe reports its accuracy on the held-out split. The penalty is
given or chosen from :data:`RIDGE_GRID` by 3-fold cross-validation on the training split, so
each encoder is probed with its best penalty. With only held-out images to spare (the
data-parallel path), :func:`cross_validated_accuracy` fits and tests it ``folds`` times so that
every image is tested once, by a probe that never saw it. Deterministic, fast (no iterative
fit), no scikit-learn. A ridge classifier is a linear probe like the paper's logistic regression; on
the same features its accuracy is usually a little lower.

The same probe on a randomly initialised encoder of the same architecture is the baseline: a
representation learned by I-JEPA should be clearly more linearly separable than random
features.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["RIDGE_GRID", "cross_validated_accuracy", "fit_ridge_classifier", "fold_indices",
           "linear_probe_accuracy", "pooled_features", "probe_accuracy", "select_penalty",
           "split_indices"]

#: penalties (per training row, on standardised features) cross-validation chooses from; it
#: reaches down to 1e-9 because nearly collinear features (a random ViT's pooled features are
#: close to a linear map of the pixels) are probed best almost unpenalised: with 1e-5 as the
#: smallest, a random encoder's probe on held-out digits lost 2 points at the grid's edge
RIDGE_GRID = (1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
_FOLDS = 3


@torch.no_grad()
def pooled_features(encoder: torch.nn.Module, images: Tensor, chunk: int = 256) -> Tensor:
    """``encoder(images)`` ``(N, patches, D)`` averaged over the patches -> ``(N, D)`` float64
    on the CPU, computed in eval mode and in chunks of ``chunk`` images (the encoder's mode is
    restored)."""
    was_training = encoder.training
    encoder.eval()
    try:
        out = [encoder(images[i:i + chunk]).mean(dim=1).double() for i in range(0, len(images), chunk)]
    finally:
        encoder.train(was_training)
    return torch.cat(out).cpu()


def _standardise(train_x: Tensor, *others: Tensor) -> list[Tensor]:
    mean = train_x.mean(dim=0)
    std = train_x.std(dim=0, unbiased=False).clamp_min(1e-6)
    return [(x.double() - mean) / std for x in (train_x, *others)]


def fit_ridge_classifier(features: Tensor, labels: Tensor, num_classes: int,
                         penalties: tuple[float, ...]) -> list[tuple[Tensor, Tensor]]:
    """``[(weight (D, K), bias (K,))]``, one per penalty: ``argmin ||X W + b - Y||^2 + p n
    ||W||^2`` for the one-hot labels ``Y`` of ``features`` ``X`` ``(n, D)`` (float64), from one
    SVD of the centred features."""
    x = features.double()
    y = F.one_hot(labels.long(), num_classes).double()
    x_mean, y_mean = x.mean(dim=0), y.mean(dim=0)
    u, s, vh = torch.linalg.svd(x - x_mean, full_matrices=False)
    uty = u.T @ (y - y_mean)
    out = []
    for p in penalties:
        weight = vh.T @ ((s / (s * s + p * len(x))).unsqueeze(1) * uty)
        out.append((weight, y_mean - x_mean @ weight))
    return out


def _accuracies(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                num_classes: int, penalties: tuple[float, ...]) -> list[float]:
    train_x, test_x = _standardise(train_x, test_x)
    fits = fit_ridge_classifier(train_x, train_y, num_classes, penalties)
    return [float(((test_x @ w + b).argmax(dim=1) == test_y.long()).double().mean()) for w, b in fits]


def fold_indices(n: int, folds: int, seed: int = 0) -> list[Tensor]:
    """``range(n)`` in ``folds`` contiguous chunks of a seeded shuffle (sizes differ by at most
    one); ``ValueError`` unless ``2 <= folds <= n``."""
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= n:
        raise ValueError(f"cross-validation needs 2 <= folds <= rows, got {folds!r} folds of {n} rows")
    return list(torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tensor_split(folds))


def select_penalty(features: Tensor, labels: Tensor, num_classes: int,
                   grid: tuple[float, ...] = RIDGE_GRID) -> float:
    """The penalty of ``grid`` with the best mean accuracy over 3 folds of ``(features,
    labels)`` (contiguous folds of a seeded shuffle; the smaller penalty wins a tie; with
    fewer than 6 rows, the middle of the grid)."""
    n = len(features)
    if n < 2 * _FOLDS:
        return grid[len(grid) // 2]
    folds = fold_indices(n, _FOLDS)
    scores = torch.zeros(len(grid), dtype=torch.float64)
    for k, held in enumerate(folds):
        kept = torch.cat([f for j, f in enumerate(folds) if j != k])
        scores += torch.tensor(_accuracies(features[kept], labels[kept], features[held],
                                           labels[held], num_classes, grid), dtype=torch.float64)
    best = max(range(len(grid)), key=lambda i: (float(scores[i]), -i))
    return grid[best]


def probe_accuracy(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                   num_classes: int, penalty: float | None = None) -> float:
    """Accuracy on ``(test_x, test_y)`` of the ridge classifier fitted on the standardised
    ``(train_x, train_y)`` (the test features standardised with the training statistics);
    ``penalty=None``: chosen by :func:`select_penalty` on the training rows."""
    if len(train_x) == 0 or len(test_x) == 0:
        raise ValueError(f"the linear probe needs training and test rows, got {len(train_x)} "
                         f"and {len(test_x)}")
    labels = torch.cat([train_y.reshape(-1), test_y.reshape(-1)])
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"probe labels must be in [0, {num_classes}), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    if penalty is None:
        penalty = select_penalty(train_x, train_y, num_classes)
    return _accuracies(train_x, train_y, test_x, test_y, num_classes, (penalty,))[0]


def cross_validated_accuracy(features: Tensor, labels: Tensor, num_classes: int, folds: int,
                             penalty: float | None = None, seed: int = 0,
                             low_shot: bool = False) -> float:
    """The share of ``(features, labels)`` rows the probe classifies correctly when each of
    ``folds`` folds (:func:`fold_indices`) is tested by the probe fitted on the other folds
    (:func:`probe_accuracy`; ``penalty=None``: chosen on those training rows): every row is
    tested once, so the accuracy's standard error is that of ``len(features)`` test images.
    ``low_shot``: the other way round, each fold in turn is the probe's only training rows
    (``1 / folds`` of the labels) and the other folds are its test rows (the share correct over
    all ``folds - 1`` tests of each row)."""
    correct = tested = 0.0
    parts = fold_indices(len(features), folds, seed)
    for k, part in enumerate(parts):
        rest = torch.cat([f for j, f in enumerate(parts) if j != k])
        train, test = (part, rest) if low_shot else (rest, part)
        correct += probe_accuracy(features[train], labels[train], features[test], labels[test],
                                  num_classes, penalty) * len(test)
        tested += len(test)
    return correct / tested


def split_indices(n: int, train_fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A seeded random split of ``range(n)`` into (train, test) index tensors, at least one
    row in each (``ValueError`` for ``n < 2``)."""
    if n < 2:
        raise ValueError(f"the linear probe needs at least 2 images to split, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train = min(n - 1, max(1, int(round(train_fraction * n))))
    return order[:n_train], order[n_train:]


def linear_probe_accuracy(encoder: torch.nn.Module, train_images: Tensor, train_labels: Tensor,
                          test_images: Tensor, test_labels: Tensor, num_classes: int | None = None,
                          **fit: Any) -> float:
    """Linear-probe accuracy of the frozen ``encoder`` (see the module docstring); ``fit``:
    ``penalty`` of :func:`probe_accuracy`. ``num_classes`` defaults to the largest label + 1."""
    k = int(max(train_labels.max(), test_labels.max())) + 1 if num_classes is None else int(num_classes)
    return probe_accuracy(pooled_features(encoder, train_images), train_labels.cpu(),
                          pooled_features(encoder, test_images), test_labels.cpu(), k, **fit)
