"""argparse ``type=`` functions: a bad value exits 2 with argparse's one-line message, before anything starts."""

from __future__ import annotations

import argparse
import math

from foundation.settings import LOG_LEVELS


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must not be negative")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (nan and inf are refused)."""
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (nan and inf are refused)."""
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def camera_id(text: str) -> str:
    """A camera id: non-empty, no whitespace (it is the Kafka key and part of Redis keys)."""
    if not text or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"camera id {text!r} must be non-empty and contain no whitespace")
    return text


def camera_ids(text: str) -> list[str]:
    """Comma-separated camera ids, each as :func:`camera_id` requires."""
    return [camera_id(part) for part in text.split(",")]


def log_level(text: str) -> str:
    """One of DEBUG, INFO, WARNING, ERROR, CRITICAL, in any case; returned upper-case."""
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level: use one of {', '.join(LOG_LEVELS)}")
    return text.upper()
