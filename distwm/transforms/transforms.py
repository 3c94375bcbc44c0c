"""I-JEPA's image augmentations (facebookresearch/ijepa ``src/transforms.py``), on torch tensors.

:func:`make_transforms` builds ijepa's pipeline: random resized crop (``crop_scale``, aspect
ratio 3/4..4/3) to ``crop_size``, optional horizontal flip (p 0.5), optional colour
distortion (SimCLR's: colour jitter of strength ``color_jitter`` applied with p 0.8, then
grayscale with p 0.2), optional Gaussian blur (p 0.5, radius 0.1..2), normalisation. I-JEPA's
pretraining uses the crop alone (``crop_scale=(0.3, 1.0)``), no other augmentation.

torchvision is not a dependency of distwm, so the steps are implemented here
(:mod:`distwm.transforms.tensor_ops`), with torchvision's sampling and formulas; the pipeline
first converts its input (a PIL image, an ``(H, W, C)`` uint8 array, or a ``(C, H, W)`` uint8 /
float tensor) to a float ``(C, H, W)`` tensor in ``[0, 1]``, where ijepa crops, jitters and
blurs the PIL image and converts last; a batch ``(B, C, H, W)`` is transformed sample by
sample. Randomness comes from torch's global RNG, as in torchvision (``torch.manual_seed``
makes it reproducible).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from distwm.transforms import tensor_ops as ops

__all__ = ["ColorJitter", "Compose", "GaussianBlur", "Normalize", "RandomApply", "RandomGrayscale",
           "RandomHorizontalFlip", "RandomResizedCrop", "ToTensor", "make_transforms"]

logger = logging.getLogger(__name__)


def _happens(p: float) -> bool:
    return bool(torch.rand(1).item() < p)


class Compose:
    """Apply ``transforms`` in order; a ``(B, C, H, W)`` tensor is transformed per sample."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, img: Any) -> Any:
        if isinstance(img, Tensor) and img.dim() == 4:
            return torch.stack([self(sample) for sample in img])
        for transform in self.transforms:
            img = transform(img)
        return img


class ToTensor:
    """To a float ``(C, H, W)`` tensor in ``[0, 1]`` (:func:`~distwm.transforms.tensor_ops.to_float_image`)."""

    def __call__(self, img: Any) -> Tensor:
        return ops.to_float_image(img)


class RandomResizedCrop:
    """A crop of a random ``scale`` fraction and aspect ratio in ``ratio``, resized to ``size``."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0)):
        self.size = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
        if not (0.0 < scale[0] <= scale[1] <= 1.0):
            raise ValueError(f"RandomResizedCrop: scale {tuple(scale)} must satisfy 0 < min <= max <= 1")
        if not (0.0 < ratio[0] <= ratio[1]):
            raise ValueError(f"RandomResizedCrop: ratio {tuple(ratio)} must satisfy 0 < min <= max")
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def __call__(self, img: Tensor) -> Tensor:
        top, left, h, w = ops.random_resized_crop_box(img.shape[-2], img.shape[-1], self.scale, self.ratio)
        return ops.resized_crop(img, top, left, h, w, self.size)


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, img: Tensor) -> Tensor:
        return ops.hflip(img) if _happens(self.p) else img


class ColorJitter:
    """torchvision's ``ColorJitter``: brightness / contrast / saturation factors uniform in
    ``[max(0, 1 - x), 1 + x]``, hue shift uniform in ``[-hue, hue]``, applied in a random order."""

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0, hue: float = 0.0):
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if value < 0:
                raise ValueError(f"ColorJitter: {name} must be >= 0, got {value}")
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"ColorJitter: hue must lie in [0, 0.5], got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    @staticmethod
    def _factor(x: float) -> float:
        return torch.empty(1).uniform_(max(0.0, 1.0 - x), 1.0 + x).item()

    def __call__(self, img: Tensor) -> Tensor:
        for index in torch.randperm(4).tolist():
            if index == 0 and self.brightness > 0:
                img = ops.adjust_brightness(img, self._factor(self.brightness))
            elif index == 1 and self.contrast > 0:
                img = ops.adjust_contrast(img, self._factor(self.contrast))
            elif index == 2 and self.saturation > 0:
                img = ops.adjust_saturation(img, self._factor(self.saturation))
            elif index == 3 and self.hue > 0:
                img = ops.adjust_hue(img, torch.empty(1).uniform_(-self.hue, self.hue).item())
        return img


class RandomApply:
    """Apply ``transforms`` (in order) with probability ``p``."""

    def __init__(self, transforms: Sequence[Callable], p: float = 0.5):
        self.transforms, self.p = list(transforms), p

    def __call__(self, img: Any) -> Any:
        if not _happens(self.p):
            return img
        for transform in self.transforms:
            img = transform(img)
        return img


class RandomGrayscale:
    """To grayscale (as many channels as before) with probability ``p``."""

    def __init__(self, p: float = 0.1):
        self.p = p

    def __call__(self, img: Tensor) -> Tensor:
        return ops.rgb_to_grayscale(img).expand_as(img).clone() if _happens(self.p) else img


class Normalize:
    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, img: Tensor) -> Tensor:
        return ops.normalize(img, self.mean, self.std)


class GaussianBlur:
    """Blur with probability ``p``, radius (the Gaussian's standard deviation, in pixels)
    uniform in ``[radius_min, radius_max]``. Takes a PIL image (blurred by PIL's
    ``ImageFilter.GaussianBlur``, as ijepa) or a ``(C, H, W)`` float tensor."""

    def __init__(self, p: float = 0.5, radius_min: float = 0.1, radius_max: float = 2.0):
        if not 0.0 <= p <= 1.0 or not 0.0 <= radius_min <= radius_max:
            raise ValueError(f"GaussianBlur: need 0 <= p <= 1 and 0 <= radius_min <= radius_max, got p={p}, "
                             f"radius_min={radius_min}, radius_max={radius_max}")
        self.prob = p
        self.radius_min = radius_min
        self.radius_max = radius_max

    def __call__(self, img: Any) -> Any:
        if not _happens(self.prob):
            return img
        radius = self.radius_min + torch.rand(1).item() * (self.radius_max - self.radius_min)
        if isinstance(img, Tensor):
            return ops.gaussian_blur(img, radius)
        from PIL import ImageFilter

        return img.filter(ImageFilter.GaussianBlur(radius=radius))


def make_transforms(crop_size: int = 224, crop_scale=(0.3, 1.0), color_jitter: float = 1.0,
                    horizontal_flip: bool = False, color_distortion: bool = False, gaussian_blur: bool = False,
                    normalization=((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))) -> Compose:
    """ijepa's augmentation pipeline (see the module docstring): input image -> normalised float
    ``(C, crop_size, crop_size)`` tensor."""
    steps: list[Callable] = [ToTensor(), RandomResizedCrop(crop_size, scale=crop_scale)]
    if horizontal_flip:
        steps.append(RandomHorizontalFlip())
    if color_distortion:
        s = color_jitter
        steps += [RandomApply([ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8), RandomGrayscale(p=0.2)]
    if gaussian_blur:
        steps.append(GaussianBlur(p=0.5))
    steps.append(Normalize(normalization[0], normalization[1]))
    return Compose(steps)
