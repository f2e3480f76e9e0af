"""Versions of the trained classification heads: save, list, activate, roll back, export, import.

A head version is a folder holding two files:

    weights.safetensors   flat dict name -> float32 tensor (safetensors: no pickle, ever)
    card.json             metadata: encoders, labels, training data, metrics, sha256 of the weights

Registry layout under `root` (for example `$MMSA_HOME/heads`):

    versions/<version>/weights.safetensors
    versions/<version>/card.json
    active.json           {"active": version, "history": [previous actives, oldest first]}
    .lock                 flock'ed around every active.json update

Why the care with files: the dashboard lets a person correct the model live, possibly from
two browser sessions or a CLI at once. A version therefore appears only when it is complete
(written into a temp folder, then renamed into place), active.json is replaced atomically
under a lock, and everything read back is checked (sha256, JSON, types) before it is used.
Uploads are untrusted: they are parsed with safetensors and json only, size-capped, and
compared with the encoders the app is running before they are accepted.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import zipfile
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from core import config
from core.io.labels import LABELS

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"
BUILTIN_ALIAS = "builtin"  # always names the shipped default, whatever its card calls it

# Heads are small MLPs over frozen features (a few MB); 50 MB leaves room and still stops
# a mistaken or hostile upload from filling memory or disk.
MAX_WEIGHTS_BYTES = 50 * 1024 * 1024
MAX_CARD_BYTES = 1024 * 1024
MAX_ZIP_BYTES = MAX_WEIGHTS_BYTES + MAX_CARD_BYTES + 64 * 1024
MAX_HISTORY = 100  # enough rollbacks for any human; keeps active.json small

# Letters, digits, dot, underscore, dash; no leading dot, so no "..", no hidden/temp folders.
_VERSION_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_TEMP_PREFIX = ".tmp-"  # temp folders start with a dot: never a valid version, never listed


class RegistryError(ValueError):
    """Anything wrong with a head version: bad id, missing or corrupt files, incompatible upload."""


# --------------------------------------------------------------------------- validation


def check_version_id(version: object) -> str:
    """Return `version` if it is a safe folder name, else raise (stops '../../etc' and friends)."""
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise RegistryError(
            f"invalid head version id {version!r}: use only letters, digits, '.', '_', '-' "
            "(not starting with '.', at most 128 characters)"
        )
    return version


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_card(card: object) -> dict:
    """Check the types of a card's fields; return it. Unknown extra fields are allowed and kept.

    Required: labels, text_encoder, image_encoder (without them nobody can tell whether the
    heads fit the running encoders). The rest is type-checked only when present.
    """
    if not isinstance(card, dict):
        raise RegistryError(f"card must be a JSON object, got {type(card).__name__}")
    problems: list[str] = []

    labels = card.get("labels")
    if not (isinstance(labels, list) and len(labels) == len(LABELS) and all(isinstance(x, str) for x in labels)):
        problems.append(f"labels must be a list of {len(LABELS)} strings, got {labels!r}")

    for key in ("text_encoder", "image_encoder"):
        encoder = card.get(key)
        if not isinstance(encoder, dict):
            problems.append(f"{key} must be an object with spec, id, dim; got {encoder!r}")
            continue
        for field in ("spec", "id"):
            if not isinstance(encoder.get(field), str) or not encoder.get(field):
                problems.append(f"{key}.{field} must be a non-empty string, got {encoder.get(field)!r}")
        if not (_is_int(encoder.get("dim")) and encoder["dim"] > 0):
            problems.append(f"{key}.dim must be a positive integer, got {encoder.get('dim')!r}")

    if "hidden" in card and not (_is_int(card["hidden"]) and card["hidden"] > 0):
        problems.append(f"hidden must be a positive integer, got {card['hidden']!r}")
    if "members" in card and not (_is_int(card["members"]) and 1 <= card["members"] <= 64):
        problems.append(f"members must be an integer from 1 to 64, got {card['members']!r}")
    if "dropout" in card and not (_is_number(card["dropout"]) and 0 <= card["dropout"] < 1):
        problems.append(f"dropout must be a number in [0, 1), got {card['dropout']!r}")
    if "temperatures" in card:
        temps = card["temperatures"]
        if not isinstance(temps, dict) or not all(_is_number(t) and t > 0 for t in temps.values()):
            problems.append(f"temperatures must map names to positive numbers, got {temps!r}")
    for key in ("training", "metrics"):
        if key in card and not isinstance(card[key], dict):
            problems.append(f"{key} must be an object, got {type(card[key]).__name__}")
    for key in ("note", "created_at", "weights_sha256", "version"):
        if key in card and not isinstance(card[key], str):
            problems.append(f"{key} must be a string, got {card[key]!r}")
    if card.get("parent") is not None and not isinstance(card["parent"], str):
        problems.append(f"parent must be a version string or null, got {card['parent']!r}")

    if problems:
        raise RegistryError("invalid card: " + "; ".join(problems))
    return card


def check_compatible(card: dict, tensor_shapes: dict[str, tuple[int, ...]], expected: dict | None) -> None:
    """Raise RegistryError naming every difference between a head version and what the app runs.

    `expected` = {"text_encoder": {"id", "dim"}, "image_encoder": {...},
                  "tensor_shapes": {name: shape}, "labels": [...] (optional, default LABELS)}.
    Labels are always checked: heads trained on another class order would silently mislabel.
    """
    expected = expected or {}
    problems: list[str] = []

    want_labels = list(expected.get("labels", LABELS))
    if card.get("labels") != want_labels:
        problems.append(f"labels differ: file has {card.get('labels')}, app uses {want_labels}")

    for key in ("text_encoder", "image_encoder"):
        want = expected.get(key)
        if not want:
            continue
        have = card.get(key) or {}
        for field in ("id", "dim"):
            if field in want and have.get(field) != want[field]:
                problems.append(
                    f"{key}.{field} differs: file was trained on {have.get(field)!r}, app runs {want[field]!r}"
                )

    want_shapes = expected.get("tensor_shapes")
    if want_shapes is not None:
        want_shapes = {name: tuple(shape) for name, shape in want_shapes.items()}
        have_shapes = {name: tuple(shape) for name, shape in tensor_shapes.items()}
        missing = sorted(set(want_shapes) - set(have_shapes))
        extra = sorted(set(have_shapes) - set(want_shapes))
        if missing:
            problems.append(f"missing tensors: {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected tensors: {', '.join(extra)}")
        for name in sorted(set(want_shapes) & set(have_shapes)):
            if want_shapes[name] != have_shapes[name]:
                problems.append(
                    f"tensor {name} has shape {list(have_shapes[name])}, expected {list(want_shapes[name])}"
                )

    if problems:
        raise RegistryError("head version does not fit this app: " + "; ".join(problems))


def _check_tensors(tensors: object) -> dict[str, torch.Tensor]:
    if not isinstance(tensors, dict) or not tensors:
        raise RegistryError("weights must be a non-empty dict of name -> tensor")
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise RegistryError(f"weights entry {name!r} is not a named torch tensor")
        if tensor.dtype != torch.float32:
            raise RegistryError(f"tensor {name} is {tensor.dtype}; head weights must be float32")
    return tensors


# --------------------------------------------------------------------------- folder I/O


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_default(value: object) -> object:
    # Trainers hand over numpy / torch scalars in metrics; store them as plain numbers.
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _normalise_card(card: dict) -> dict:
    """A JSON round trip: what we validate is exactly what will be stored and read back."""
    try:
        return json.loads(json.dumps(card, default=_json_default))
    except (TypeError, ValueError) as error:
        raise RegistryError(f"card cannot be stored as JSON: {error}") from error


def _serialise(tensors: dict[str, torch.Tensor], card: dict) -> tuple[bytes, bytes, dict]:
    """Weights bytes, card bytes and the final card (with weights_sha256 of those exact bytes)."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in _check_tensors(tensors).items()}
    weights = save_safetensors_bytes(tensors)
    card = {**card, "weights_sha256": _sha256(weights)}
    card_bytes = json.dumps(card, indent=2, default=_json_default).encode("utf-8")
    return weights, card_bytes, card


def _write_file(path: Path, data: bytes) -> None:
    # fsync so that "renamed into place" also means "on disk" after a power cut.
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets you fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_into_temp(parent: Path, weights: bytes, card_bytes: bytes) -> Path:
    """Write both files into a fresh temp folder under `parent`; remove it again on any failure."""
    temp = parent / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
    temp.mkdir(parents=True)
    try:
        _write_file(temp / WEIGHTS_FILE, weights)
        _write_file(temp / CARD_FILE, card_bytes)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return temp


def write_version_folder(folder: Path, tensors: dict[str, torch.Tensor], card: dict) -> None:
    """Write weights + card into `folder` atomically (also used for assets/models/default).

    The card gets `weights_sha256` filled in; other fields are kept as given. If `folder`
    already exists it is replaced: the old one is renamed aside first, so readers see either
    the old or the new complete folder (or, for an instant, none), never a half-written one.
    """
    folder = Path(folder)
    card = validate_card(_normalise_card(card))
    weights, card_bytes, _ = _serialise(tensors, card)
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = _write_into_temp(folder.parent, weights, card_bytes)
    old = None
    if folder.exists():
        old = folder.parent / f"{_TEMP_PREFIX}old-{secrets.token_hex(8)}"
        os.rename(folder, old)
    try:
        os.rename(temp, folder)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if old is not None:
            os.rename(old, folder)
        raise
    _fsync_dir(folder.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _read_card_file(folder: Path, name: str) -> dict:
    try:
        raw = (folder / CARD_FILE).read_bytes()
    except OSError as error:
        raise RegistryError(f"head version {name}: cannot read {CARD_FILE}: {error}") from error
    try:
        card = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise RegistryError(f"head version {name}: {CARD_FILE} is not valid JSON ({error})") from error
    try:
        return validate_card(card)
    except RegistryError as error:
        raise RegistryError(f"head version {name}: {error}") from error


def _read_weights_bytes(folder: Path, card: dict, name: str) -> bytes:
    """Raw weights bytes, checked against the card's sha256 (catches corruption and tampering)."""
    try:
        weights = (folder / WEIGHTS_FILE).read_bytes()
    except OSError as error:
        raise RegistryError(f"head version {name}: cannot read {WEIGHTS_FILE}: {error}") from error
    if not card.get("weights_sha256"):
        raise RegistryError(f"head version {name}: card has no weights_sha256, cannot verify weights")
    if _sha256(weights) != card["weights_sha256"]:
        raise RegistryError(f"head version {name}: {WEIGHTS_FILE} does not match the sha256 in its card (corrupt?)")
    return weights


def _parse_weights(weights: bytes, name: str) -> dict[str, torch.Tensor]:
    # safetensors only: a pickle (or anything else) fails to parse here and is never executed.
    try:
        tensors = load_safetensors_bytes(weights)
    except Exception as error:  # SafetensorError is not a public, stable exception type
        raise RegistryError(f"{name}: weights are not a valid safetensors file ({error})") from error
    try:
        return _check_tensors(tensors)
    except RegistryError as error:
        raise RegistryError(f"{name}: {error}") from error


def read_version_folder(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify one version folder: (tensors, card). RegistryError if anything is off."""
    folder = Path(folder)
    name = folder.name
    card = _read_card_file(folder, name)
    weights = _read_weights_bytes(folder, card, name)
    return _parse_weights(weights, f"head version {name}"), card


# --------------------------------------------------------------------------- the registry


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _new_version_id(created: datetime) -> str:
    # Time first so ids sort by age; a random tail so two saves in one second never clash.
    return created.strftime("v%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def open_registry(builtin: Path | None = None) -> "HeadRegistry":
    """The user's registry (under MMSA_HOME) with the shipped default, or MMSA_HEAD_DIR, as builtin.
    The app and the CLI both open it here, so they serve the same versions."""
    return HeadRegistry(config.registry_root(), builtin=builtin or config.default_head_dir())


class HeadRegistry:
    """Head versions on disk plus the pointer to the active one. Safe across processes."""

    def __init__(self, root: Path, *, builtin: Path | None = None):
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.active_file = self.root / "active.json"
        self.lock_file = self.root / ".lock"
        self.builtin = Path(builtin) if builtin is not None else None
        self.versions_dir.mkdir(parents=True, exist_ok=True)

    # ---- naming

    def _builtin_id(self) -> str | None:
        """The builtin's id: its card's version if that is a valid id, else 'builtin'."""
        if self.builtin is None or not (self.builtin / CARD_FILE).is_file():
            return None
        try:
            version = json.loads((self.builtin / CARD_FILE).read_text("utf-8")).get("version")
            return check_version_id(version)
        except (OSError, ValueError, AttributeError):
            return BUILTIN_ALIAS

    def _folder(self, version: str) -> tuple[Path, bool]:
        """(folder, is_builtin) for a version id; RegistryError if there is no such version."""
        check_version_id(version)
        saved = self.versions_dir / version
        if version != BUILTIN_ALIAS and saved.is_dir():
            return saved, False
        builtin_id = self._builtin_id()
        if builtin_id is not None and version in (BUILTIN_ALIAS, builtin_id):
            return self.builtin, True
        raise RegistryError(f"no head version {version!r} in {self.root}")

    # ---- reading

    def card(self, version: str) -> dict:
        folder, is_builtin = self._folder(version)
        card = _read_card_file(folder, version)
        if is_builtin:
            return {**card, "version": self._builtin_id(), "builtin": True}
        if card.get("version") != version:
            raise RegistryError(f"head version {version}: card says version {card.get('version')!r} (corrupt?)")
        return card

    def load(self, version: str) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors and card of a version, weights verified against the card's sha256."""
        folder, _ = self._folder(version)
        card = self.card(version)
        weights = _read_weights_bytes(folder, card, version)
        return _parse_weights(weights, f"head version {version}"), card

    def versions(self) -> list[dict]:
        """Cards of all readable versions, newest first, builtin last. Broken folders are skipped."""
        cards = []
        for entry in self.versions_dir.iterdir():
            if not entry.is_dir() or not _VERSION_RE.fullmatch(entry.name):
                continue  # temp folders (".tmp-...") and stray files
            try:
                cards.append(self.card(entry.name))
            except RegistryError as error:
                log.warning("skipping unreadable head version: %s", error)
        cards.sort(key=lambda c: (c.get("created_at", ""), c["version"]), reverse=True)
        if self._builtin_id() is not None:
            try:
                cards.append(self.card(BUILTIN_ALIAS))
            except RegistryError as error:
                log.warning("skipping unreadable builtin head: %s", error)
        return cards

    # ---- writing a version

    def save(self, tensors: dict[str, torch.Tensor], card: dict, *, note: str = "", parent: str | None = None) -> str:
        """Store a new version (not activated) and return its id."""
        if parent is not None:
            check_version_id(parent)
        if not isinstance(note, str):
            raise RegistryError(f"note must be a string, got {type(note).__name__}")
        card = _normalise_card(card)
        created = _now()
        card["created_at"] = created.isoformat(timespec="microseconds")
        if note:
            card["note"] = note
        card.setdefault("note", "")
        if parent is not None:
            card["parent"] = parent
        card.setdefault("parent", None)
        card["version"] = _new_version_id(created)  # placeholder so the card validates as a whole
        validate_card(card)

        for _ in range(5):  # a clash needs two saves in one second with the same 16 random bits
            version = _new_version_id(created)
            card["version"] = version
            weights, card_bytes, _ = _serialise(tensors, card)
            temp = _write_into_temp(self.versions_dir, weights, card_bytes)
            try:
                # rename() refuses a non-empty existing target, so a clash cannot overwrite.
                os.rename(temp, self.versions_dir / version)
            except OSError:
                shutil.rmtree(temp, ignore_errors=True)
                if (self.versions_dir / version).exists():
                    continue
                raise
            _fsync_dir(self.versions_dir)
            return version
        raise RegistryError("could not find a free version id; try again")

    # ---- the active pointer

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # flock is per open file, so this serialises threads, processes and app sessions alike.
        with open(self.lock_file, "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _read_state(self) -> dict:
        if not self.active_file.exists():
            return {"active": None, "history": []}
        try:
            state = json.loads(self.active_file.read_text("utf-8"))
            if not isinstance(state, dict) or not isinstance(state.get("history", []), list):
                raise ValueError("expected {'active': ..., 'history': [...]}")
        except (OSError, ValueError) as error:
            raise RegistryError(f"{self.active_file} is unreadable ({error}); re-activate a version") from error
        return {"active": state.get("active"), "history": list(state.get("history", []))}

    def _write_state(self, state: dict) -> None:
        state = {"active": state["active"], "history": state["history"][-MAX_HISTORY:]}
        temp = self.root / f"{_TEMP_PREFIX}active-{secrets.token_hex(8)}.json"
        try:
            _write_file(temp, json.dumps(state, indent=2).encode("utf-8"))
            os.replace(temp, self.active_file)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _resolve(self, stored: str | None) -> str | None:
        # active.json stores "builtin" for the shipped head so a re-shipped default stays active.
        if stored == BUILTIN_ALIAS:
            return self._builtin_id()
        return stored

    def active_version(self) -> str:
        """The active version id; the builtin when nothing was activated."""
        active = self._resolve(self._read_state()["active"])
        if active is None:
            active = self._builtin_id()
        if active is None:
            raise RegistryError("no head version is active and there is no builtin default; train or import one")
        return active

    def activate(self, version: str) -> None:
        """Make `version` active; the previous active one goes onto the rollback history."""
        folder, is_builtin = self._folder(version)
        self.load(version)  # refuse to activate a corrupt version: fail now, not at prediction time
        stored = BUILTIN_ALIAS if is_builtin else version
        with self._locked():
            state = self._read_state()
            current = state["active"]
            if current is None and self._builtin_id() is not None:
                current = BUILTIN_ALIAS  # the implicit default is a real place to roll back to
            if current == stored:
                return
            if current is not None:
                state["history"].append(current)
            state["active"] = stored
            self._write_state(state)

    def rollback(self) -> str:
        """Re-activate the previous active version and return it."""
        with self._locked():
            state = self._read_state()
            if not state["history"]:
                raise RegistryError("nothing to roll back to: no earlier active head version")
            # Popping (not pushing the current one) lets repeated rollbacks walk further back.
            state["active"] = state["history"].pop()
            self._write_state(state)
        return self._resolve(state["active"]) or BUILTIN_ALIAS

    # ---- download / upload

    def export_zip(self, version: str) -> bytes:
        """A zip of weights.safetensors + card.json, verified before it leaves."""
        folder, _ = self._folder(version)
        card = self.card(version)
        weights = _read_weights_bytes(folder, card, version)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(WEIGHTS_FILE, weights)
            archive.writestr(CARD_FILE, (folder / CARD_FILE).read_bytes())
        return buffer.getvalue()

    def import_version(self, weights: bytes, card_json: bytes, *, expected: dict | None = None) -> str:
        """Validate an uploaded weights + card pair and store it as a new version (not activated)."""
        if not isinstance(weights, (bytes, bytearray)) or not isinstance(card_json, (bytes, bytearray, str)):
            raise RegistryError("upload must be bytes")
        if len(weights) > MAX_WEIGHTS_BYTES:
            raise RegistryError(f"{WEIGHTS_FILE} is {len(weights):,} bytes; the limit is {MAX_WEIGHTS_BYTES:,}")
        if len(card_json) > MAX_CARD_BYTES:
            raise RegistryError(f"{CARD_FILE} is {len(card_json):,} bytes; the limit is {MAX_CARD_BYTES:,}")
        try:
            text = card_json.decode("utf-8") if isinstance(card_json, (bytes, bytearray)) else card_json
            card = json.loads(text)
        except (UnicodeDecodeError, ValueError) as error:
            raise RegistryError(f"uploaded {CARD_FILE} is not valid JSON ({error})") from error
        card = validate_card(card)
        weights = bytes(weights)
        claimed = card.get("weights_sha256")
        if claimed and claimed != _sha256(weights):
            raise RegistryError(f"uploaded {WEIGHTS_FILE} does not match the sha256 in {CARD_FILE} (corrupt, or from another version?)")
        tensors = _parse_weights(weights, f"uploaded {WEIGHTS_FILE}")
        check_compatible(card, {name: tuple(t.shape) for name, t in tensors.items()}, expected)

        # The registry assigns a fresh id and time; remember where the file came from.
        imported_from = card.get("version")
        card = {k: v for k, v in card.items() if k not in ("version", "created_at", "weights_sha256")}
        card["imported_from"] = imported_from
        return self.save(tensors, card)

    def import_zip(self, data: bytes, *, expected: dict | None = None) -> str:
        """Import a zip made by export_zip. Reads the two files in memory; nothing is extracted."""
        if len(data) > MAX_ZIP_BYTES:
            raise RegistryError(f"zip is {len(data):,} bytes; the limit is {MAX_ZIP_BYTES:,}")
        limits = {WEIGHTS_FILE: MAX_WEIGHTS_BYTES, CARD_FILE: MAX_CARD_BYTES}
        found: dict[str, bytes] = {}
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name, limit in limits.items():
                    try:
                        info = archive.getinfo(name)
                    except KeyError:
                        raise RegistryError(f"zip has no {name} at its top level") from None
                    if info.file_size > limit:
                        raise RegistryError(f"{name} in the zip is {info.file_size:,} bytes; the limit is {limit:,}")
                    with archive.open(info) as member:
                        content = member.read(limit + 1)  # never trust the header's size alone
                    if len(content) > limit:
                        raise RegistryError(f"{name} in the zip is over the {limit:,} byte limit")
                    found[name] = content
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError) as error:
            raise RegistryError(f"not a readable zip file ({error})") from error
        return self.import_version(found[WEIGHTS_FILE], found[CARD_FILE], expected=expected)
