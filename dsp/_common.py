"""Validation helpers shared by the processors (not real-time code)."""

from __future__ import annotations

import math

import numpy as np

from debleed.errors import DebleedError, ParameterError


def check_range(name, value, low, high, *, low_open=False, allow_inf=False):
    """Return ``float(value)`` if ``low <= value <= high`` (``low < value`` if ``low_open``).

    Raises
    ------
    ParameterError
        Naming ``name``, the value and the allowed range.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(v) or (math.isinf(v) and not (allow_inf and v > 0)):
        allowed = f"{'(' if low_open else '['}{low}, {high}]" + (" or inf" if allow_inf else "")
        raise ParameterError(f"{name} must be in {allowed}, got {value!r}")
    if math.isinf(v):
        return v
    if (v <= low if low_open else v < low) or v > high:
        allowed = f"{'(' if low_open else '['}{low}, {high}]" + (" or inf" if allow_inf else "")
        raise ParameterError(f"{name} must be in {allowed}, got {value!r}")
    return v


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise :class:`ParameterError`."""
    if value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_block(proc, x, out):
    """Check the ``(n_channels, n_frames)`` float32 in/out pair of ``proc.process``; return n_frames."""
    if getattr(proc, "_state", None) is None:
        raise DebleedError(f"{type(proc).__name__}.process called before prepare()")
    for label, a in (("input", x), ("output", out)):
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 2:
            raise ParameterError(
                f"{label} must be a float32 array of shape (n_channels, n_frames), got "
                f"{getattr(a, 'dtype', type(a).__name__)} with shape {getattr(a, 'shape', None)}")
    if x.shape[0] != proc.n_channels or out.shape != x.shape:
        raise ParameterError(
            f"expected input and output of shape ({proc.n_channels}, n_frames), got {x.shape} and {out.shape}")
    if x.shape[1] > proc.max_block:
        raise ParameterError(f"block of {x.shape[1]} frames exceeds max_block={proc.max_block}")
    return x.shape[1]
