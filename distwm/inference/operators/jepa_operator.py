"""Inference operator for I-JEPA: raw images -> normalised image tensors and a patch mask."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch
import torch.nn.functional as F

from distwm.inference.operators.base import OperatorABC

__all__ = ["JEPAOperator"]

#: ImageNet's mean / std (the normalisation of I-JEPA's training images)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class JEPAOperator(OperatorABC):
    """Operator for JEPA model preprocessing: handles image/video masking and patch processing.

    Args:
        image_size: side of the square images the ViT takes.
        patch_size: side of its patches (``image_size`` must be a multiple).
        mask_ratio: fraction of the patches a random mask hides.
        seed: seeds the random masks (keyword only; None: torch's global RNG).

    ``process({"images": ..., "mask": ...})``: ``images`` is a PIL image, an ``(H, W, C)`` /
    ``(C, H, W)`` array or tensor, a batch ``(B, ...)`` of them or a list of any of these
    (uint8 ``[0, 255]`` or float ``[0, 1]``; grey is repeated to RGB, alpha dropped). Returns
    float32 / int64 / bool tensors:

    * ``images``: ``(B, 3, image_size, image_size)``, resized (bilinear, antialiased) and
      normalised with ImageNet's mean and std, as I-JEPA's training images;
    * ``mask``: ``(B, N)`` bool over the ``N = (image_size / patch_size)^2`` patches (row-major),
      True where hidden: the given ``mask`` (``(N,)`` or ``(B, N)``, bool or 0/1) or, without
      one, ``round(mask_ratio * N)`` patches per image drawn uniformly at random;
    * ``context_indices`` ``(B, N - M)`` / ``target_indices`` ``(B, M)``: the visible and the
      hidden patches' indices in ascending order (every image must hide as many patches), the
      ``masks`` that ``VisionTransformer(x, masks)`` and the predictor take.
    """

    def __init__(self, image_size: int = 224, patch_size: int = 16, mask_ratio: float = 0.75, *,
                 seed: int | None = None):
        super().__init__()
        for name, value in (("image_size", image_size), ("patch_size", patch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"JEPAOperator: {name} must be a positive int, got {value!r}")
        if image_size % patch_size:
            raise ValueError(f"JEPAOperator: image_size ({image_size}) must be a multiple of "
                             f"patch_size ({patch_size})")
        if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)) or not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"JEPAOperator: mask_ratio must be in (0, 1), got {mask_ratio!r}")
        self.image_size, self.patch_size, self.mask_ratio = image_size, patch_size, float(mask_ratio)
        self.num_patches = (image_size // patch_size) ** 2
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    # -- images ---------------------------------------------------------------------------------
    def _one(self, image: Any) -> torch.Tensor:
        """One image or a batch of them -> ``(B, 3, image_size, image_size)`` in [0, 1]."""
        from distwm.transforms.tensor_ops import to_float_image

        if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[0] in (1, 3, 4) \
                and image.shape[-1] not in (1, 3, 4):
            image = torch.from_numpy(image)  # (C, H, W) array
        if torch.is_tensor(image) and image.dim() == 2:
            image = image.unsqueeze(0)
        ndim = image.dim() if torch.is_tensor(image) else np.ndim(image)
        if ndim == 4:
            return torch.cat([self._one(item) for item in image])
        try:
            x = to_float_image(image.detach().cpu() if torch.is_tensor(image) else image)[None]
        except ValueError as exc:
            raise ValueError(f"JEPAOperator: 'images' must be (H, W, C), (C, H, W) or batched: {exc}") from None
        if x.shape[1] not in (1, 3, 4):
            raise ValueError(f"JEPAOperator: images need 1, 3 or 4 channels, got {x.shape[1]}")
        x = x[:, :3] if x.shape[1] == 4 else x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return x

    def _images(self, images: Any) -> torch.Tensor:
        items = images if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise ValueError("JEPAOperator: 'images' is empty")
        x = torch.cat([self._one(item) for item in items])
        mean = torch.tensor(_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_STD).view(1, 3, 1, 1)
        return (x - mean) / std

    # -- masks ----------------------------------------------------------------------------------
    def _mask(self, mask: Any, batch: int) -> torch.Tensor:
        n = self.num_patches
        if mask is None:
            hidden = int(round(self.mask_ratio * n))
            order = torch.rand(batch, n, generator=self.generator).argsort(dim=1)
            out = torch.zeros(batch, n, dtype=torch.bool)
            out.scatter_(1, order[:, :hidden], True)
            return out
        m = torch.as_tensor(np.asarray(mask.detach().cpu() if torch.is_tensor(mask) else mask))
        if m.dim() == 1:
            m = m.unsqueeze(0).expand(batch, -1)
        if m.dim() != 2 or m.shape != (batch, n):
            raise ValueError(f"JEPAOperator: 'mask' must be ({n},) or ({batch}, {n}) over the "
                             f"patches, got shape {tuple(m.shape)}")
        if not (m.dtype == torch.bool or bool(((m == 0) | (m == 1)).all())):
            raise ValueError("JEPAOperator: 'mask' must be bool or 0/1 (1: hidden patch)")
        return m.bool()

    def process(self, inputs: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """Process JEPA inputs: images with masking (see the class docstring)."""
        if not isinstance(inputs, dict) or "images" not in inputs:
            got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(f"JEPAOperator.process needs a dict with an 'images' key, got {got}")
        images = self._images(inputs["images"])
        mask = self._mask(inputs.get("mask"), len(images))
        hidden = mask.sum(dim=1)
        if bool((hidden != hidden[0]).any()) or int(hidden[0]) in (0, self.num_patches):
            raise ValueError(f"JEPAOperator: every image must hide the same number of patches, at "
                             f"least one and not all {self.num_patches}; got {hidden.tolist()}")
        positions = torch.arange(self.num_patches).expand(len(images), -1)
        return {"images": images, "mask": mask,
                "context_indices": positions[~mask].view(len(images), -1),
                "target_indices": positions[mask].view(len(images), -1)}
