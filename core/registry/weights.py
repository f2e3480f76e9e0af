"""A head version's weights as bytes: safetensors only (a pickle, or anything else, never loads), float32
tensors, and the sha256 the card records of exactly the bytes stored."""
from __future__ import annotations

import hashlib

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from core.registry.card import RegistryError


def sha256(data: bytes) -> str:
    """The hex sha256 of ``data`` (what a card's ``weights_sha256`` records)."""
    return hashlib.sha256(data).hexdigest()


def check_tensors(tensors: object) -> dict[str, torch.Tensor]:
    """``tensors`` if it is a non-empty dict of name -> float32 tensor, else RegistryError."""
    if not isinstance(tensors, dict) or not tensors:
        raise RegistryError("weights must be a non-empty dict of name -> tensor")
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise RegistryError(f"weights entry {name!r} is not a named torch tensor")
        if tensor.dtype != torch.float32:
            raise RegistryError(f"tensor {name} is {tensor.dtype}; head weights must be float32")
    return tensors


def weights_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """The safetensors bytes a version stores for ``tensors`` (checked first)."""
    return save_safetensors_bytes({name: t.detach().cpu().contiguous() for name, t in check_tensors(tensors).items()})


def parse_safetensors(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """Tensors from safetensors bytes; RegistryError naming ``name`` for anything else (a pickle fails to
    parse here and is never executed)."""
    try:
        return load_safetensors_bytes(data)
    except Exception as error:  # SafetensorError is not a public, stable exception type
        raise RegistryError(f"{name}: weights are not a valid safetensors file ({error})") from error


def parse_weights(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """A version's head tensors from its weights bytes: safetensors, float32 only."""
    tensors = parse_safetensors(data, name)
    try:
        return check_tensors(tensors)
    except RegistryError as error:
        raise RegistryError(f"{name}: {error}") from error
