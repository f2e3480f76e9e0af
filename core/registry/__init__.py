"""Versions of the trained classification heads: save, list, activate, roll back, export, import.

A head version is a folder holding two files:

    weights.safetensors   flat dict name -> float32 tensor (safetensors: no pickle, ever)
    card.json             metadata: encoders, labels, training data, metrics, sha256 of the weights

Registry layout under `root` (for example `$MMSA_HOME/heads`):

    versions/<version>/weights.safetensors
    versions/<version>/card.json
    active.json           {"active": version, "history": [previous actives, oldest first],
                           "events": [{"at", "action", "version", "by", "role"}, ...]}
    .lock                 flock'ed around every active.json update

Who may change what is served (activate, roll back, import, delete) is ``core.access``'s business: those
methods take an ``actor`` and refuse a viewer with ``AccessDenied``. Damaged versions are listed with a
``damaged`` reason and cannot be activated; a damaged or missing active version falls back to the
shipped default (``HeadRegistry.serving`` says why).

Why the care with files: the dashboard lets a person correct the model live, possibly from
two browser sessions or a CLI at once. A version therefore appears only when it is complete
(written into a temp folder, then renamed into place), active.json is replaced atomically
under a lock, and everything read back is checked (sha256, JSON, types) before it is used.
Uploads are untrusted: they are parsed with safetensors and json only, size-capped, and
compared with the encoders the app is running before they are accepted.

Where each part lives: ``card`` (what a version contains and the checks on it), ``storage`` (version
folders and the ``HeadRegistry``), ``transfer`` (zip export and import). Import the names below from
``core.registry``.
"""
from __future__ import annotations

from core.registry.card import (
    CARD_FILE,
    MAX_CARD_BYTES,
    MAX_WEIGHTS_BYTES,
    MAX_ZIP_BYTES,
    WEIGHTS_FILE,
    RegistryError,
    check_compatible,
    check_version_id,
    validate_card,
)
from core.registry.storage import (
    BUILTIN_ALIAS,
    MAX_HISTORY,
    HeadRegistry,
    RegistryUnwritable,
    open_registry,
    read_version_folder,
    write_version_folder,
)
from core.registry.transfer import DuplicateVersion

__all__ = [
    "BUILTIN_ALIAS", "CARD_FILE", "MAX_CARD_BYTES", "MAX_HISTORY", "MAX_WEIGHTS_BYTES", "MAX_ZIP_BYTES",
    "WEIGHTS_FILE", "DuplicateVersion", "HeadRegistry", "RegistryError", "RegistryUnwritable", "check_compatible", "check_version_id", "open_registry",
    "read_version_folder", "validate_card", "write_version_folder",
]
