"""The operator interface of inference pipelines (the seed's ``inference.operators.base``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict

__all__ = ["OperatorABC"]


class OperatorABC(ABC):
    """Abstract base class for operators that preprocess inputs for inference pipelines."""

    @abstractmethod
    def process(self, inputs: Dict[str, Any]) -> Dict[str, Any]:
        """Process raw inputs into standardized tensor format for model consumption."""

    def __call__(self, inputs: Dict[str, Any]) -> Dict[str, Any]:
        return self.process(inputs)
