"""Annotated tensor types that validate dtype, shape and finiteness inside artifacts.

NumPy arrays and nested sequences are accepted and converted; errors are raised as
``ValueError`` so pydantic reports them under the offending field's name.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import torch
from pydantic import AfterValidator, BeforeValidator

__all__ = ["BoolTensor", "FloatTensor", "LongTensor", "Tensor", "as_tensor"]


def as_tensor(value: Any) -> torch.Tensor:
    """Convert ``value`` (tensor, NumPy array or nested sequence) to a tensor without copying tensors."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"expected a tensor or array, got {type(value).__name__}") from exc


def _to_float(value: Any) -> torch.Tensor:
    tensor = as_tensor(value)
    if tensor.is_complex():
        raise ValueError(f"expected a real floating-point tensor, got dtype {tensor.dtype}")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    return tensor


def _finite(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.numel() and not bool(torch.isfinite(tensor).all()):
        nan = int(torch.isnan(tensor).sum())
        inf = int(torch.isinf(tensor).sum())
        raise ValueError(f"must be finite: found {nan} NaN and {inf} infinite values")
    return tensor


def _to_long(value: Any) -> torch.Tensor:
    tensor = as_tensor(value)
    if tensor.dtype == torch.bool:
        return tensor.to(torch.int64)
    if tensor.is_floating_point():
        if tensor.numel() and not bool((tensor == tensor.round()).all()):
            raise ValueError("expected integer values, got non-integral floats")
        return tensor.to(torch.int64)
    if tensor.is_complex():
        raise ValueError(f"expected an integer tensor, got dtype {tensor.dtype}")
    return tensor.to(torch.int64) if tensor.dtype != torch.int64 else tensor


def _to_bool(value: Any) -> torch.Tensor:
    tensor = as_tensor(value)
    if tensor.dtype == torch.bool:
        return tensor
    if tensor.numel() and not bool(((tensor == 0) | (tensor == 1)).all()):
        raise ValueError("expected a boolean tensor (only 0 and 1 allowed)")
    return tensor.to(torch.bool)


Tensor = Annotated[torch.Tensor, BeforeValidator(as_tensor)]
"""Any tensor (converted from arrays)."""

FloatTensor = Annotated[torch.Tensor, BeforeValidator(_to_float), AfterValidator(_finite)]
"""A finite floating-point tensor (integers are promoted to float32; NaN and inf rejected)."""

LongTensor = Annotated[torch.Tensor, BeforeValidator(_to_long)]
"""An int64 tensor (bools and integral floats are converted)."""

BoolTensor = Annotated[torch.Tensor, BeforeValidator(_to_bool)]
"""A boolean tensor (0/1 integers are converted)."""
