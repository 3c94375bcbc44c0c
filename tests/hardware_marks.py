"""Marks for tests that need a CPU feature (not an installable dependency, so CI may skip them)."""

from __future__ import annotations

import pytest

from distwm.utils import precision

#: the marks of a test or parameter that needs native bf16 matmuls (AVX512-BF16 / AMX)
NEEDS_BF16_MARKS = [
    pytest.mark.skipif(not precision.cpu_has_bf16(),
                       reason="this CPU has no native bf16 matmuls (AVX512-BF16 / AMX)"),
    pytest.mark.skip_ok_in_ci("hardware, not an installable dependency: CPUs without AMX / AVX512-BF16"),
]


def needs_bf16(test):
    """Run ``test`` only on a CPU with native bf16 matmuls (a skip elsewhere, CI included)."""
    for mark in NEEDS_BF16_MARKS:
        test = mark(test)
    return test
