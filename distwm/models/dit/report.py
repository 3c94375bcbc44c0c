"""What a DiT run reports at each checkpoint (:meth:`DiTTrainable.report
<distwm.models.dit.trainable.DiTTrainable.report>`):

* image ``samples``: class-conditional samples of the sampling network (the EMA), one row per
  class (``report_classes`` of them, evenly spread over the classes; an unconditional model:
  rows of samples), ``report_samples_per_class`` columns, with the config's sampler,
  ``sample_steps`` and ``guidance_scale``; the same noise at every checkpoint;
* image ``real``: the report batch's real images in the same layout (by class);
* scalars: the evaluation of :func:`distwm.models.dit.evaluation.evaluate_samples` on
  ``eval_samples`` further samples (labels cycling over all classes) against the report
  batch, when the run trains the evaluation classifier; ``sampling/steps``,
  ``sampling/guidance_scale`` and ``sampling/images_per_s``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
from torch import Tensor

from distwm.models.dit.evaluation import evaluate_samples, image_grid

if TYPE_CHECKING:
    from distwm.models.dit.trainable import DiTTrainable

__all__ = ["dit_report", "grid_classes"]


def grid_classes(num_classes: int, rows: int) -> list[int]:
    """``min(rows, num_classes)`` classes evenly spread over ``[0, num_classes)``."""
    if num_classes <= rows:
        return list(range(num_classes))
    return sorted({int(round(v)) for v in np.linspace(0, num_classes - 1, rows)})


def _real_grid(real: Tensor, labels: Optional[Tensor], classes: list[int], cols: int) -> np.ndarray:
    blank = torch.full_like(real[:1], -1.0)
    if labels is None or not classes:
        rows = max(1, min(len(real) // cols, 10))
        return image_grid(real[: rows * cols], rows, cols)
    cells = []
    for k in classes:
        mine = real[labels == k][:cols]
        cells.append(torch.cat([mine, blank.expand(cols - len(mine), *real.shape[1:])]))
    return image_grid(torch.cat(cells), len(classes), cols)


@torch.no_grad()
def dit_report(trainable: "DiTTrainable", real: Tensor, labels: Optional[Tensor]) -> dict[str, Any]:
    """The report of ``trainable`` on real images ``(B, C, H, W)`` in [-1, 1] and their labels."""
    c = trainable.config
    k = trainable.model.num_classes
    cols = c.report_samples_per_class
    classes = grid_classes(k, c.report_classes) if k else []
    rows = len(classes) or c.report_classes
    evaluate = trainable.classifier is not None and labels is not None and c.eval_samples > 0
    n_eval = c.eval_samples if evaluate else 0
    if k:
        grid_labels = torch.tensor(classes, device=trainable.device).repeat_interleave(cols)
        eval_labels = torch.arange(n_eval, device=trainable.device) % k
        start = time.perf_counter()
        images = trainable.sample(labels=torch.cat([grid_labels, eval_labels]), seed=c.seed)
    else:
        eval_labels = None
        start = time.perf_counter()
        images = trainable.sample(n=rows * cols + n_eval, seed=c.seed)
    seconds = time.perf_counter() - start
    grid, generated = images[: rows * cols], images[rows * cols:]
    scalars = {"sampling/steps": float(c.sample_steps or c.TIMESTEPS),
               "sampling/guidance_scale": float(c.guidance_scale if k else 1.0),
               "sampling/images_per_s": len(images) / max(seconds, 1e-9)}
    if evaluate:
        scalars.update(evaluate_samples(trainable.classifier, real, labels, generated, eval_labels))
    return {"scalars": scalars,
            "images": {"samples": image_grid(grid, rows, cols),
                       "real": _real_grid(real, labels, classes, cols)}}
