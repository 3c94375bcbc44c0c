"""Sample quality judged in the run, without downloaded networks.

The DiT paper's FID needs ImageNet and the Inception-v3 weights; what distwm computes instead,
on any labelled image data set, uses a small classifier (:class:`SampleClassifier`) that the
:class:`~distwm.models.dit.trainable.DiTTrainable` trains alongside the DiT, with its own Adam
optimizer, on the clean training images of every update (its gradients averaged over the
workers like the DiT's, so every replica holds the same classifier):

* ``eval/sample_class_accuracy``: the classifier's accuracy on class-conditional samples
  (labelled with the class they were generated for), beside ``eval/chance_accuracy`` (1/K)
  and ``eval/real_class_accuracy`` (its accuracy on the real report images: what a perfect
  generator would score);
* ``eval/frechet_distance``: the Frechet distance between Gaussians fitted to the classifier's
  penultimate features of real and of generated images (the FID formula, ``|mu_r - mu_g|^2 +
  tr(S_r + S_g - 2 (S_r S_g)^(1/2))``, computed in float64 through symmetric eigen-
  decompositions), beside ``eval/frechet_distance_real_split``, the distance between two
  halves of the real images (the floor that sampling noise puts under it at this sample size).

These are relative measures for one run and one data set (the feature extractor is trained in
the run and changes as it trains); they are not comparable with published FIDs.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["SampleClassifier", "classifier_accuracy", "classifier_features", "evaluate_samples",
           "frechet_distance", "gaussian_statistics", "image_grid"]


class SampleClassifier(nn.Module):
    """A small CNN on images in [-1, 1]: three 3x3 convolutions (the last two stride 2) with
    GroupNorm and ReLU, global average pooling to ``2 * width`` features, a linear head."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"SampleClassifier needs >= 2 classes, got {num_classes}")
        w2 = 2 * width

        def stage(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(min(8, cout), cout), nn.ReLU()]

        self.body = nn.Sequential(*stage(in_channels, width, 1), *stage(width, w2, 2),
                                  *stage(w2, w2, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(w2, num_classes)
        self.num_classes, self.feature_dim = num_classes, w2

    def features(self, x: Tensor) -> Tensor:
        """The penultimate features ``(B, 2 * width)``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


@torch.no_grad()
def _batched(fn, images: Tensor, batch_size: int) -> Tensor:
    return torch.cat([fn(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


@torch.no_grad()
def classifier_features(classifier: SampleClassifier, images: Tensor, batch_size: int = 256) -> Tensor:
    """Penultimate features of ``images`` ``(N, C, H, W)`` in [-1, 1] (eval mode)."""
    was_training = classifier.training
    classifier.eval()
    try:
        return _batched(classifier.features, images, batch_size)
    finally:
        classifier.train(was_training)


@torch.no_grad()
def classifier_accuracy(classifier: SampleClassifier, images: Tensor, labels: Tensor,
                        batch_size: int = 256) -> float:
    """Fraction of ``images`` the classifier assigns to ``labels``."""
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"classifier_accuracy needs as many labels as images (> 0), got "
                         f"{len(images)} images and {len(labels)} labels")
    feats = classifier_features(classifier, images, batch_size)
    predicted = classifier.head(feats).argmax(1)
    return float((predicted == labels.to(predicted.device)).float().mean())


def gaussian_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) covariance of ``features`` ``(N, D)``, in float64."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"gaussian_statistics needs features (N >= 2, D), got shape "
                         f"{tuple(features.shape)}")
    f = features.detach().double()
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(matrix: Tensor) -> Tensor:
    w, v = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """The Frechet distance between Gaussians fitted to two feature sets ``(N, D)``, ``(M, D)``
    (>= 2 rows each): ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^(1/2) S_b
    S_a^(1/2))^(1/2))``; ``tr`` of that square root equals ``tr((S_a S_b)^(1/2))``."""
    if features_a.shape[1:] != features_b.shape[1:]:
        raise ValueError(f"frechet_distance: feature sizes differ: {tuple(features_a.shape)} vs "
                         f"{tuple(features_b.shape)}")
    mu_a, cov_a = gaussian_statistics(features_a)
    mu_b, cov_b = gaussian_statistics(features_b)
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    distance = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return max(float(distance), 0.0)


def evaluate_samples(classifier: SampleClassifier, real: Tensor, real_labels: Tensor,
                     generated: Tensor, generated_labels: Optional[Tensor]) -> dict[str, float]:
    """The scalars of the module docstring for ``real`` and ``generated`` images
    ``(N, C, H, W)`` in [-1, 1] (``generated_labels`` None: an unconditional model, no
    accuracy on samples)."""
    out = {"eval/chance_accuracy": 1.0 / classifier.num_classes,
           "eval/real_class_accuracy": classifier_accuracy(classifier, real, real_labels)}
    if generated_labels is not None:
        out["eval/sample_class_accuracy"] = classifier_accuracy(classifier, generated,
                                                                generated_labels)
    if len(real) >= 2 and len(generated) >= 2:
        real_features = classifier_features(classifier, real)
        out["eval/frechet_distance"] = frechet_distance(real_features,
                                                        classifier_features(classifier, generated))
        if len(real) >= 4:
            half = len(real) // 2
            out["eval/frechet_distance_real_split"] = frechet_distance(
                real_features[:half], real_features[half:2 * half])
    return out


def image_grid(images, rows: int, cols: int, pad: int = 1) -> np.ndarray:
    """``rows x cols`` images ``(N, C, H, W)`` (float in [-1, 1] or uint8; C 1 or 3; N <=
    rows * cols, filled row by row, blanks black) as one ``(H', W', 3)`` uint8 image with
    ``pad`` black pixels between them."""
    if isinstance(images, Tensor):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3) or len(arr) > rows * cols:
        raise ValueError(f"image_grid needs (N <= {rows * cols}, C in (1, 3), H, W) images, got "
                         f"shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.round((np.clip(arr, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    if arr.shape[1] == 1:
        arr = np.repeat(arr, 3, axis=1)
    n, _, h, w = arr.shape
    grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top:top + h, left:left + w] = arr[i].transpose(1, 2, 0)
    return grid
