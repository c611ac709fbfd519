"""The base class of every artifact and content fingerprints."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

__all__ = ["Artifact", "fingerprint"]


class Artifact(BaseModel):
    """Base class of everything that flows between modules.

    Artifacts are immutable pydantic models: fields are validated on construction
    (tensors for dtype, shape and finiteness where it matters) and the error names
    the offending field. Unknown fields are rejected.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True, extra="forbid")

    def fingerprint(self) -> str:
        """Return a SHA-256 digest of the artifact's content (tensors included)."""
        return fingerprint(self)


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu").contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.to(torch.float32)
        digest.update(tensor.numpy().tobytes())
    elif isinstance(value, torch.nn.Module):
        digest.update(f"M{type(value).__qualname__}".encode())
        for key, item in value.state_dict().items():
            digest.update(key.encode())
            _feed(digest, item)
    elif isinstance(value, BaseModel):
        digest.update(f"B{type(value).__qualname__}".encode())
        for name in type(value).model_fields:
            digest.update(name.encode())
            _feed(digest, getattr(value, name))
    elif isinstance(value, Mapping):
        digest.update(b"D")
        for key in sorted(value, key=str):
            digest.update(str(key).encode())
            _feed(digest, value[key])
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif callable(value) and not isinstance(value, type):
        digest.update(b"F")  # functions are opaque: their behaviour is fingerprinted through outputs
    else:
        digest.update(f"V{type(value).__name__}:{value!r}".encode())


def fingerprint(value: Any) -> str:
    """Return a SHA-256 hex digest of ``value``'s content.

    Tensors contribute their dtype, shape and bytes; modules their state dict; pydantic
    models their fields; mappings and sequences their items. Equal content gives equal
    digests, which the conformance kit uses to check determinism and non-mutation.
    """
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()
