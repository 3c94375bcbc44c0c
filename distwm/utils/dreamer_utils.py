"""Dreamer helpers at the seed's path: parameter freezing here; symlog, two-hot and lambda
returns re-exported from :mod:`distwm.blocks.returns`; the experiment :class:`Logger`
re-exported from :mod:`distwm.utils.run_logger` (torch-free).

Imports torch at module level; ``distwm.utils`` exposes these names lazily.
"""

from __future__ import annotations

from typing import Iterable

import torch

from distwm.blocks import returns as _returns
from distwm.blocks.returns import (  # noqa: F401  (re-exported, see __all__)
    TwoHotEncoder, compute_lambda_return, compute_return, symexp, symlog,
)
from distwm.utils.run_logger import Logger
from distwm.utils.utils import get_combined_params

__all__ = [*_returns.__all__, "get_parameters", "FreezeParameters", "Logger"]


# -- parameters ------------------------------------------------------------------------------
def get_parameters(modules: Iterable[torch.nn.Module]) -> list:
    """The parameters of every module in ``modules``, as one list."""
    return get_combined_params(*modules)


class FreezeParameters:
    """Context manager that disables gradients of the given modules' parameters.

    On exit every parameter gets back the ``requires_grad`` it had on entry.
    """

    def __init__(self, modules: Iterable[torch.nn.Module]):
        self.modules = list(modules)
        self._saved: list[tuple[torch.nn.Parameter, bool]] = []

    def __enter__(self) -> "FreezeParameters":
        self._saved = [(p, p.requires_grad) for p in get_parameters(self.modules)]
        for param, _ in self._saved:
            param.requires_grad_(False)
        return self

    def __exit__(self, *exc) -> None:
        for param, flag in self._saved:
            param.requires_grad_(flag)
        self._saved = []
