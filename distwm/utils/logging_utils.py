"""Consistent ``logging`` setup for distwm modules (standard library only)."""

from __future__ import annotations

import logging
import os

__all__ = ["setup_logging", "LOG_FORMAT", "LOG_LEVELS"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def setup_logging(name: str, level: str = "INFO", log_file: str | None = None) -> logging.Logger:
    """Return the logger ``name`` with a stderr handler (and a file handler for ``log_file``).

    Calling it again for the same name updates the level and never adds a second handler for
    the same destination. ``level`` is one of ``LOG_LEVELS`` (any case) or an int.
    """
    if isinstance(level, str):
        upper = level.upper()
        if upper not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}; choose one of {LOG_LEVELS}")
        numeric = getattr(logging, upper)
    elif isinstance(level, int):
        numeric = level
    else:
        raise ValueError(f"log level must be a name in {LOG_LEVELS} or an int, got {level!r}")

    logger = logging.getLogger(name)
    logger.setLevel(numeric)
    formatter = logging.Formatter(LOG_FORMAT)
    has_stream = any(
        type(h) is logging.StreamHandler and getattr(h, "_distwm", False) for h in logger.handlers
    )
    if not has_stream:
        stream = logging.StreamHandler()
        stream._distwm = True  # type: ignore[attr-defined]
        stream.setFormatter(formatter)
        logger.addHandler(stream)
    if log_file is not None:
        target = os.path.abspath(os.fspath(log_file))
        if not any(isinstance(h, logging.FileHandler) and h.baseFilename == target
                   for h in logger.handlers):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            file_handler = logging.FileHandler(target, encoding="utf-8")
            file_handler.setFormatter(formatter)
            logger.addHandler(file_handler)
    for handler in logger.handlers:
        handler.setLevel(numeric)
    return logger
