"""The parser of every command group, and ``main``: run one command, turn the user's errors into one line."""
from __future__ import annotations

import argparse
import logging
import sys
import warnings

from core.cli import access, analyse, compare, correct, encoders, runs, scoring, training, versions

# Each group adds its subcommands in this order (the order of ``--help``).
COMMAND_GROUPS = (scoring, runs, analyse, compare, training, correct, encoders, versions, access)
# Commands that fine-tune the text encoder in PyTorch keep torch's own threads (the cores); every other
# command's torch work is the heads, on one thread (core/threads.py says why).
ALL_CORES_COMMANDS = {"finetune-text", "resplit"}

log = logging.getLogger("core.cli")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand, each with its ``run`` function as a default."""
    import core.cli

    parser = argparse.ArgumentParser(prog="python -m core.cli", description=core.cli.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _log_warnings_as_lines() -> None:
    """Warnings the engine logs (the shipped default serving in place of a damaged version, a damaged
    feature store moved aside) reach the user as ``warning: …`` lines on stderr, like the CLI's own."""
    root = logging.getLogger()
    if not root.handlers:  # leave a caller's logging set-up (the tests', an embedding program's) alone
        handler = logging.StreamHandler()
        handler.setFormatter(_OneLine())
        root.addHandler(handler)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the user's input or machine needs a fix: shown as one line, no traceback."""
    from core.access import AccessDenied
    from core.encoders import EncoderUnavailable
    from core.errors import InputError

    # OSError: a missing file, a folder that cannot be written, a full disk.
    return (InputError, EncoderUnavailable, AccessDenied, OSError)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line), run the subcommand, return its exit status. Bad input gives
    one clear ``error:`` line and status 2; anything else is a fault of this program: its traceback is logged
    and the status is 1."""
    from core.threads import HEAD_THREADS, start_torch_threads

    args = build_parser().parse_args(argv)
    start_torch_threads(None if args.command in ALL_CORES_COMMANDS else HEAD_THREADS)
    # Notices (a damaged cache rebuilt, a store that cannot be written) read as one line each.
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"warning: {message}\n"
    _log_warnings_as_lines()
    expected = user_errors()
    try:
        return args.run(args)
    except expected as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # a bug: keep the traceback for the report, say so plainly
        log.exception("internal error in `%s` (a fault of this program, not of your input; please report it "
                      "with the traceback below)", args.command)
        return 1
