"""The engine's one base class for bad input: a file, a column, an option or a state the user can fix.

Every error the user can act on derives from :class:`InputError` (a ``ValueError``), so the command line
and the pages catch exactly these and show one clear line, while a programming error keeps its traceback.
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad input the user can fix; its message says what and how, and is shown without a traceback."""
