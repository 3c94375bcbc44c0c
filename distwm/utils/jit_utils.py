"""``torch.compile`` with an eager fallback that says why.

:func:`jit_compile_function` returns a callable that compiles ``func`` with ``torch.compile`` and
runs the compiled code. When compiling is impossible (this torch has no ``torch.compile``, or
``torch.compile`` itself raises) the original function is returned; when a call of the compiled
code fails (compilation happens lazily, at the first call and at recompiles, e.g. without a C++
compiler for inductor) but the same call succeeds eagerly, the eager result is returned and
every later call runs eagerly. Either way a ``RuntimeWarning`` names the reason. An error that
the eager function raises as well is the caller's and propagates unchanged.

:func:`jit_compile_module` compiles a module's ``forward`` the same way, in place: the module
keeps its class, parameter names and ``state_dict`` keys (no ``_orig_mod.`` prefix), and its
hooks still run.
"""

from __future__ import annotations

import functools
import threading
import warnings
from typing import Any, Callable

import torch

__all__ = ["jit_compile_function", "jit_compile_module", "CompiledWithFallback"]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class CompiledWithFallback:
    """``func`` compiled with ``torch.compile`` on first use, eager once compiling has failed.

    ``eager`` is ``True`` once calls run the original function; ``fallback_reason`` says why.
    Copies and pickles hold the original function and compile again.
    """

    def __init__(self, func: Callable):
        if not callable(func):
            raise ValueError(f"jit_compile_function needs a callable, got {type(func).__name__}")
        self.func = func
        self.fallback_reason: str | None = None
        self._compiled: Callable | None = None
        self._lock = threading.Lock()
        functools.update_wrapper(self, func, updated=())

    @property
    def eager(self) -> bool:
        return self.fallback_reason is not None

    def _fall_back(self, why: str, stacklevel: int) -> None:
        self.fallback_reason = why
        self._compiled = None
        name = getattr(self.func, "__qualname__", repr(self.func))
        warnings.warn(f"torch.compile of {name} is not used ({why}); running it eagerly",
                      RuntimeWarning, stacklevel=stacklevel)

    def _compiled_func(self) -> Callable | None:
        with self._lock:
            if self._compiled is None and not self.eager:
                compile_fn = getattr(torch, "compile", None)
                if compile_fn is None:
                    self._fall_back(f"torch {torch.__version__} has no torch.compile", 4)
                else:
                    try:
                        self._compiled = compile_fn(self.func)
                    except Exception as exc:  # unsupported Python / platform, bad backend
                        self._fall_back(f"torch.compile raised {_reason(exc)}", 4)
            return self._compiled

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        compiled = None if self.eager else self._compiled_func()
        if compiled is None:
            return self.func(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except Exception as exc:
            result = self.func(*args, **kwargs)  # raises the caller's own errors eagerly
            self._fall_back(f"the compiled call failed with {_reason(exc)}", 3)
            return result

    def __reduce__(self):
        return (type(self), (self.func,))


def jit_compile_function(func: Callable) -> Callable:
    """Compile ``func`` with ``torch.compile``, falling back to it eagerly (module docstring).

    Returns a :class:`CompiledWithFallback` (called like ``func``), or ``func`` itself when
    ``torch.compile`` is unavailable or raises.
    """
    wrapper = CompiledWithFallback(func)
    return wrapper.func if wrapper._compiled_func() is None else wrapper


def jit_compile_module(module: torch.nn.Module) -> torch.nn.Module:
    """Compile ``module.forward`` in place with :func:`jit_compile_function`; returns ``module``
    (unchanged when ``torch.compile`` is unavailable)."""
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"jit_compile_module needs a torch.nn.Module, got {type(module).__name__}")
    current = module.__dict__.get("forward")
    if isinstance(current, CompiledWithFallback):  # compiled already
        return module
    compiled = jit_compile_function(module.forward)
    if isinstance(compiled, CompiledWithFallback):
        module.forward = compiled
    return module
