"""Image operations on float tensors ``(C, H, W)`` in ``[0, 1]`` (torchvision is not a
dependency of distwm): conversion, crop-and-resize, flip, the colour adjustments of
``torchvision.transforms.ColorJitter``, grayscale, Gaussian blur and normalisation. The colour
formulas are torchvision's tensor implementations (ITU-R 601 luma for grayscale, contrast
against the mean luma, hue rotation in HSV)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["adjust_brightness", "adjust_contrast", "adjust_hue", "adjust_saturation", "gaussian_blur",
           "hflip", "normalize", "random_resized_crop_box", "resized_crop", "rgb_to_grayscale", "to_float_image"]

_LUMA = (0.299, 0.587, 0.114)


def to_float_image(img) -> Tensor:
    """A PIL image, an ``(H, W[, C])`` uint8 array or a ``(C, H, W)`` tensor (uint8: 0..255,
    float: taken as ``[0, 1]``) as a float32 ``(C, H, W)`` tensor in ``[0, 1]``."""
    if isinstance(img, Tensor):
        if img.dim() != 3:
            raise ValueError(f"expected a (C, H, W) image tensor, got shape {tuple(img.shape)}")
        return img.float().div(255.0) if img.dtype == torch.uint8 else img.float()
    array = np.array(img)  # PIL images and arrays are (H, W[, C]); a writable copy
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"expected an (H, W[, C]) image, got an array of shape {array.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    return tensor.float().div(255.0) if array.dtype == np.uint8 else tensor.float()


def random_resized_crop_box(height: int, width: int, scale, ratio) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a crop covering a ``scale`` fraction of the image with aspect
    ratio (w / h) in ``ratio`` (log-uniform): torchvision's ``RandomResizedCrop.get_params``
    (10 tries, then the central crop clipped to ``ratio``)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,)))
            left = int(torch.randint(0, width - w + 1, (1,)))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(img: Tensor, top: int, left: int, h: int, w: int, size: tuple[int, int]) -> Tensor:
    """The ``h`` x ``w`` crop at ``(top, left)`` resized to ``size`` (bilinear, antialiased)."""
    crop = img[:, top:top + h, left:left + w].unsqueeze(0)
    return F.interpolate(crop, size=size, mode="bilinear", align_corners=False, antialias=True).squeeze(0)


def hflip(img: Tensor) -> Tensor:
    return img.flip(-1)


def rgb_to_grayscale(img: Tensor) -> Tensor:
    """``(1, H, W)`` luma of an RGB image (a one-channel image is returned as it is)."""
    if img.shape[0] == 1:
        return img
    r, g, b = img.unbind(0)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(0)


def _blend(img: Tensor, other, factor: float) -> Tensor:
    return (factor * img + (1.0 - factor) * other).clamp(0.0, 1.0)


def adjust_brightness(img: Tensor, factor: float) -> Tensor:
    return _blend(img, 0.0, factor)


def adjust_contrast(img: Tensor, factor: float) -> Tensor:
    return _blend(img, rgb_to_grayscale(img).mean(), factor)


def adjust_saturation(img: Tensor, factor: float) -> Tensor:
    return img if img.shape[0] == 1 else _blend(img, rgb_to_grayscale(img), factor)


def adjust_hue(img: Tensor, hue_factor: float) -> Tensor:
    """Rotate the hue by ``hue_factor`` (in ``[-0.5, 0.5]`` turns)."""
    if img.shape[0] == 1:
        return img
    r, g, b = img.unbind(0)
    maxc, minc = img.max(0).values, img.min(0).values
    value, chroma = maxc, maxc - minc
    safe = torch.where(chroma == 0, torch.ones_like(chroma), chroma)
    saturation = torch.where(maxc == 0, torch.zeros_like(chroma), chroma / torch.where(maxc == 0, 1.0, maxc))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(chroma == 0, torch.zeros_like(hue), hue)
    hue = ((hue / 6.0) % 1.0 + hue_factor) % 1.0
    # HSV -> RGB
    i = torch.floor(hue * 6.0)
    f = hue * 6.0 - i
    i = i.long() % 6
    p, q, t = value * (1 - saturation), value * (1 - saturation * f), value * (1 - saturation * (1 - f))
    choices = torch.stack([torch.stack(c) for c in ((value, t, p), (q, value, p), (p, value, t),
                                                    (p, q, value), (t, p, value), (value, p, q))])
    return torch.gather(choices, 0, i.expand(1, 3, *i.shape)).squeeze(0).clamp(0.0, 1.0)


def gaussian_blur(img: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of standard deviation ``sigma`` pixels (kernel radius
    ``ceil(3 sigma)``, reflected borders), as PIL's ``GaussianBlur(radius=sigma)``."""
    height, width = img.shape[-2:]
    radius = min(int(math.ceil(3.0 * sigma)), height - 1, width - 1)
    if sigma <= 0 or radius < 1:
        return img
    x = torch.arange(-radius, radius + 1, dtype=img.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = img.shape[0]
    out = F.pad(img.unsqueeze(0), (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return out.squeeze(0)


def normalize(img: Tensor, mean, std) -> Tensor:
    mean_t = torch.as_tensor(mean, dtype=img.dtype).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=img.dtype).view(-1, 1, 1)
    if mean_t.shape[0] not in (1, img.shape[0]) or std_t.shape[0] not in (1, img.shape[0]):
        raise ValueError(f"normalize: mean {tuple(mean)} / std {tuple(std)} do not match {img.shape[0]} channels")
    return (img - mean_t) / std_t
