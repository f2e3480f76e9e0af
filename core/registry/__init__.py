"""Versions of the trained classification heads: save, list, activate, roll back, export, import.

A head version is a folder holding two files:

    weights.safetensors   flat dict name -> float32 tensor (safetensors: no pickle, ever)
    card.json             metadata: encoders, labels, training data, metrics, sha256 of the weights

Registry layout under `root` (for example `$MMSA_HOME/heads`):

    versions/<version>/weights.safetensors
    versions/<version>/card.json
    versions/<version>/adapter/           only for a version that keeps its own LoRA text adapter
    active.json           {"active": version, "history": [previous actives, oldest first],
                           "events": [{"at", "action", "version", "by", "role"}, ...]}
    .lock                 flock'ed around every active.json update

A card is read as a ``HeadCard`` (typed fields, checked once; ``to_dict`` gives back what was read).

Who may change what is served (activate, roll back, import, delete) is ``core.access``'s business: those
methods take an ``actor`` and refuse a viewer with ``AccessDenied``. Damaged versions are listed with a
``damaged`` reason and cannot be activated; a damaged or missing active version falls back to the
shipped default (``HeadRegistry.serving`` says why).

Why the care with files: the dashboard lets a person correct the model live, possibly from
two browser sessions or a CLI at once. A version therefore appears only when it is complete
(written into a temp folder, then renamed into place), active.json is replaced atomically
under a lock, and everything read back is checked (sha256, JSON, types) before it is used.
Uploads are untrusted: they are parsed with safetensors and json only, size-capped, compared with
the encoders the app is running, and may name only encoders shipped with the app (or carry their own
adapter): a card pointing at any other folder of the server is refused before anything is stored.

Where each part lives: ``card`` (``HeadCard``, the file names and limits, ``check_compatible``),
``weights`` (safetensors bytes, sha256), ``folders`` (one version folder written and read back),
``record`` (active.json: the active pointer, rollback history and events), ``storage`` (``HeadRegistry``,
the version store), ``transfer`` (zip export, upload checks). Import the names below from
``core.registry``.
"""
from __future__ import annotations

from core.registry.card import (
    CARD_FILE,
    MAX_CARD_BYTES,
    MAX_WEIGHTS_BYTES,
    MAX_ZIP_BYTES,
    VERSION_ADAPTER,
    WEIGHTS_FILE,
    EncoderRef,
    HeadCard,
    RegistryError,
    check_compatible,
    check_version_id,
    validate_card,
)
from core.registry.folders import RegistryUnwritable, read_version_folder, write_version_folder
from core.registry.record import MAX_HISTORY
from core.registry.storage import BUILTIN_ALIAS, HeadRegistry, open_registry
from core.registry.transfer import DuplicateVersion

__all__ = [
    "BUILTIN_ALIAS", "CARD_FILE", "MAX_CARD_BYTES", "MAX_HISTORY", "MAX_WEIGHTS_BYTES", "MAX_ZIP_BYTES",
    "VERSION_ADAPTER", "WEIGHTS_FILE", "DuplicateVersion", "EncoderRef", "HeadCard", "HeadRegistry", "RegistryError",
    "RegistryUnwritable", "check_compatible", "check_version_id", "open_registry", "read_version_folder",
    "validate_card", "write_version_folder",
]
