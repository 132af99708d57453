"""Argument checks shared by the torch metric functions.

Why a module: every metric validates the same few things (a floating tensor, a mask of the same
shape, finite values at valid positions), and users should read one wording for one mistake.
Each check raises ``InputError`` naming the argument, what was expected and what was found.
"""

from __future__ import annotations

import math
import numbers

import torch

from entropymon.errors import InputError


def float_tensor(x, name: str, min_rank: int = 1) -> torch.Tensor:
    """x, detached, after checking it is a floating tensor of rank >= min_rank with elements."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a floating torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise InputError(f"{name}: expected a floating dtype, got {x.dtype}")
    if x.ndim < min_rank:
        raise InputError(f"{name}: expected at least {min_rank} dimension(s), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise InputError(f"{name}: expected at least one element, got shape {tuple(x.shape)}")
    return x.detach()


def bool_mask(mask, shape, name: str = "mask", what: str = "") -> torch.Tensor:
    """mask as a bool tensor of exactly ``shape`` (bool, or integer/float holding only 0 and 1)."""
    if not isinstance(mask, torch.Tensor):
        raise InputError(f"{name}: expected a bool or 0/1 torch.Tensor, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(shape):
        raise InputError(f"{name}: expected shape {tuple(shape)}{what}, got {tuple(mask.shape)}")
    if mask.dtype == torch.bool:
        return mask
    if mask.is_complex() or not bool(((mask == 0) | (mask == 1)).all()):
        raise InputError(f"{name}: expected bool or only 0/1 values, got dtype {mask.dtype} with other values")
    return mask != 0


def valid_mask(mask, shape, name: str = "mask") -> torch.Tensor:
    """A bool mask of ``shape`` (all True when mask is None) with at least one True position."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool)
    mask = bool_mask(mask, shape, name)
    if not bool(mask.any()):
        raise InputError(f"{name}: expected at least one True position, got all {mask.numel()} positions masked out")
    return mask


def same_shape(x: torch.Tensor, name: str, shape, other: str) -> None:
    if tuple(x.shape) != tuple(shape):
        raise InputError(f"{name}: expected shape {tuple(shape)} (the shape of {other}), got {tuple(x.shape)}")


def finite_at(x: torch.Tensor, mask: torch.Tensor, name: str) -> None:
    """Raise when x holds NaN/inf at a position where mask is True."""
    bad = ~torch.isfinite(x) & mask.to(x.device)
    n_bad = int(bad.sum())
    if n_bad:
        raise InputError(
            f"{name}: expected finite values, got NaN/inf at {n_bad} of {int(mask.sum())} valid positions; "
            "mask them out or let the monitor's nan_policy skip them"
        )


def positive_number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{name}: expected a positive finite number, got {value!r}")
    return float(value)
