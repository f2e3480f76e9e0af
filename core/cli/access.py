"""``hash-password``: the operator password's hash for the app's settings."""
from __future__ import annotations

import sys


def cmd_hash_password(args) -> int:
    """``hash-password``: print the salted hash of an operator password read from a prompt (twice) or stdin.
    The password never goes on the command line, where other users and the shell history could read it."""
    import getpass

    from core.access import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Operator password: ")
        if getpass.getpass("Again: ") != password:
            print("error: the two passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        print("error: use at least 8 characters", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def register(sub) -> None:
    """Add this group's subcommands to the CLI's subparsers."""

    sub.add_parser("hash-password", help="print the hash of an operator password for the app's settings "
                   "(read from a prompt or stdin, never from the command line)").set_defaults(run=cmd_hash_password)
