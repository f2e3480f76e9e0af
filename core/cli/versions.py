"""``versions``, ``activate``, ``rollback``, ``delete``, ``import``, ``export``: the head registry, acting as
the operator of this MMSA_HOME (whoever runs the command is the machine's user)."""
from __future__ import annotations

from pathlib import Path


def open_cli_registry():
    from core.registry import open_registry
    return open_registry()  # acts as the machine's user: the operator of this MMSA_HOME


def cmd_versions(args) -> int:
    """``versions``: every head version, the active one marked, damaged ones with the reason, who last activated each."""
    registry = open_cli_registry()
    active, _ = registry.serving()  # a fallback to the shipped default is logged as a warning
    last = {}
    for event in registry.events():
        if event.get("action") in ("activated", "rolled back to"):
            last[event.get("version")] = f"{event.get('action')} {event.get('at', '')} by {event.get('by', '?')}"
    for row in registry.versions():  # listing rows: a card's fields, or a damaged version's reason
        mark = "*" if row["version"] == active else " "
        created = (row.get("created_at") or "")[:19] or ("shipped" if row.get("builtin") else "")
        line = f"{mark} {row['version']:28} {created:19}  {row.get('note') or ''}"
        if row.get("damaged"):
            line += f"  DAMAGED: {row['damaged']}"
        if row["version"] in last:
            line += f"  [{last[row['version']]}]"
        print(line.rstrip())
    return 0


def cmd_activate(args) -> int:
    """``activate``: make a version the one the app and the CLI serve."""
    registry = open_cli_registry()
    registry.activate(args.version)
    print(f"version {registry.active_version()} is active")
    return 0


def cmd_rollback(args) -> int:
    """``rollback``: re-activate the previously active version."""
    print(f"rolled back: version {open_cli_registry().rollback()} is active")
    return 0


def cmd_delete(args) -> int:
    """``delete``: remove a saved version (not the active one, not the shipped default)."""
    open_cli_registry().delete(args.version)
    print(f"version {args.version} deleted")
    return 0


def cmd_import(args) -> int:
    """``import``: store a version zip (checked against the active version's encoders and shapes), not activated."""
    registry = open_cli_registry()
    tensors, card = registry.load(registry.active_version())
    expected = {"text_encoder": {"id": card.text_encoder.id, "dim": card.text_encoder.dim},
                "image_encoder": {"id": card.image_encoder.id, "dim": card.image_encoder.dim},
                "tensor_shapes": {name: tuple(t.shape) for name, t in tensors.items()}}
    version = registry.import_zip(Path(args.zip).read_bytes(), expected=expected)
    print(f"imported as version {version} (not active: `python -m core.cli activate {version}`)")
    return 0


def cmd_export(args) -> int:
    """``export``: write a version's zip (weights + card) for another machine."""
    Path(args.out).write_bytes(open_cli_registry().export_zip(args.version))
    print(f"wrote {args.out}")
    return 0


def register(sub) -> None:
    """Add this group's subcommands to the CLI's subparsers."""

    sub.add_parser("versions", help="list head versions: active, damaged, who last activated each"
                   ).set_defaults(run=cmd_versions)
    activate = sub.add_parser("activate", help="make a head version the one served (app and CLI)")
    activate.add_argument("version")
    activate.set_defaults(run=cmd_activate)
    sub.add_parser("rollback", help="re-activate the previously active head version").set_defaults(run=cmd_rollback)
    delete = sub.add_parser("delete", help="remove a saved head version (not the active one or the shipped default)")
    delete.add_argument("version")
    delete.set_defaults(run=cmd_delete)
    import_ = sub.add_parser("import", help="store a version zip made by `export` or the app's Download (not activated)")
    import_.add_argument("zip")
    import_.set_defaults(run=cmd_import)
    export = sub.add_parser("export", help="write a head version as a zip (weights + card)")
    export.add_argument("version")
    export.add_argument("--out", required=True)
    export.set_defaults(run=cmd_export)
