"""Loading from the Hugging Face hub or a local folder: a quick reachability check, ``from_pretrained``
with a clear error that names the bundled alternative, and where the loaded weights lie on disk."""
from __future__ import annotations

import json
import socket
from pathlib import Path

from core.encoders.base import EncoderUnavailable


def _is_sentence_transformers_folder(folder: Path) -> bool:
    pooling = folder / "1_Pooling" / "config.json"
    if not pooling.exists():
        return False
    return bool(json.loads(pooling.read_text()).get("pooling_mode_mean_tokens"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub. Without it, an offline machine spends minutes in the hub
    client's retries (5 per file, several files per model) before the clear error below."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_pretrained(loader, name: str, what: str, bundled_alternative: str):
    """Call a transformers ``from_pretrained`` and turn 'cannot reach the hub' into a clear error that
    names the bundled alternative (never swap silently). A local folder or a model already in the
    Hugging Face cache loads without the network."""
    try:
        return loader(name, local_files_only=True)
    except (OSError, ValueError) as local_error:
        if Path(name).is_dir() or not hub_reachable():
            raise _unavailable(what, name, bundled_alternative, local_error) from local_error
    try:
        return loader(name)
    except (OSError, ValueError) as exc:
        raise _unavailable(what, name, bundled_alternative, exc) from exc


def _unavailable(what: str, name: str, bundled_alternative: str, exc: Exception) -> EncoderUnavailable:
    return EncoderUnavailable(
        f"Could not load {what} '{name}': it is neither a local folder nor reachable on the Hugging Face "
        f"hub from this machine ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
        f"Use the bundled {what} '{bundled_alternative}' instead, or download the model on a machine "
        f"with internet and pass its folder.")


def _hub_snapshot_folder(model) -> Path | None:
    path = getattr(model.config, "_name_or_path", None)
    return Path(path) if path and Path(path).is_dir() else None
