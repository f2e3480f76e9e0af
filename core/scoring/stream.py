"""Write a scored CSV as it is made, so that a killed run keeps its rows and a rerun carries on.

Each finished chunk is appended to the output file and flushed to disk, then a small progress file
beside it (``<out>.progress.json``, replaced atomically) records how many rows and bytes are final.
A rerun with the same output and the same input, head and columns truncates whatever a crash left
after the last recorded byte and continues from the next row, so no finished row is scored twice
and the final file is byte for byte what an uninterrupted run writes. The progress file is removed
when the run completes. The output file is locked while a run writes it, so two scorers never
write the same output at once.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from core.errors import InputError
from core.io.tables import neutralise_formulas

BOM = "\ufeff"  # Excel on Windows reads the file as UTF-8 only with it (see to_safe_csv_bytes)


class ResumeError(InputError):
    """The output cannot be continued or started as asked (another input, another scorer, nothing to resume)."""


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks (input tables can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def chunk_csv_text(frame: pd.DataFrame, header: bool) -> str:
    """One chunk of the output as CSV text. It does not depend on how the rows were chunked: the scorer's
    probability columns are float64 in every chunk (``core.scoring.batch``), so a missing one is always an
    empty cell."""
    text = neutralise_formulas(frame).to_csv(index=False, header=header, quoting=csv.QUOTE_NONNUMERIC)
    return (BOM + text) if header else text


class StreamedCsv:
    """A scored CSV written chunk by chunk with a progress file; use as a context manager.

    ``fingerprint`` names what the rows depend on (input file hash, head version, columns …): a rerun
    continues only when it is the same. ``restart`` throws away a previous partial run instead.
    """

    def __init__(self, out: Path, fingerprint: dict, *, restart: bool = False):
        self.out = Path(out)
        self.progress_path = self.out.with_name(self.out.name + ".progress.json")
        self.fingerprint = fingerprint
        self.restart = restart
        self.rows_done = 0
        self.bytes_done = 0
        self._handle = None

    # -- opening ---------------------------------------------------------------------------------
    def __enter__(self) -> StreamedCsv:
        self._handle = open(self.out, "ab")  # creates it; truncated only once the lock is held
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            self._handle = None
            raise ResumeError(f"another scorer is writing {self.out} right now; wait for it to finish or "
                              "choose another --out") from None
        try:
            self._open_output()
        except BaseException:
            self._release()
            raise
        return self

    def _open_output(self) -> None:
        previous = self._read_progress()
        if previous is not None and not self.restart:
            if previous.get("fingerprint") != self.fingerprint:
                changed = sorted(k for k in set(previous.get("fingerprint", {})) | set(self.fingerprint)
                                 if previous.get("fingerprint", {}).get(k) != self.fingerprint.get(k))
                raise ResumeError(f"{self.out} holds a partial run of another job (different {', '.join(changed)}); "
                                  "use --restart to score from the beginning, or choose another --out")
            self.rows_done, self.bytes_done = int(previous["rows_done"]), int(previous["bytes_done"])
            size = os.fstat(self._handle.fileno()).st_size
            if size < self.bytes_done:
                raise ResumeError(f"{self.out} is shorter than its progress file says ({size} < {self.bytes_done} "
                                  "bytes): it was changed after the run stopped; use --restart")
            self._handle.truncate(self.bytes_done)  # drop a chunk a crash cut off half-written
            return
        self._handle.truncate(0)
        self.rows_done = self.bytes_done = 0
        self._write_progress()

    def _read_progress(self) -> dict | None:
        if not self.progress_path.exists():
            return None
        try:
            return json.loads(self.progress_path.read_text())
        except (OSError, ValueError) as error:
            raise ResumeError(f"the progress file {self.progress_path} cannot be read ({error}); "
                              "use --restart to score from the beginning") from None

    # -- writing ---------------------------------------------------------------------------------
    @property
    def resuming(self) -> bool:
        """True when this run continues a previous partial one."""
        return self.rows_done > 0

    def append(self, frame: pd.DataFrame) -> None:
        """Write the next scored rows, make them durable, then record them as done."""
        data = chunk_csv_text(frame, header=self.bytes_done == 0).encode("utf-8")
        self._handle.write(data)  # append mode: always at the end
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.rows_done += len(frame)
        self.bytes_done += len(data)
        self._write_progress()

    def _write_progress(self) -> None:
        temporary = self.progress_path.with_name(self.progress_path.name + ".tmp")
        temporary.write_text(json.dumps({"fingerprint": self.fingerprint, "rows_done": self.rows_done,
                                         "bytes_done": self.bytes_done}))
        os.replace(temporary, self.progress_path)

    def finish(self) -> None:
        """Mark the output complete: the progress file goes, the CSV stays."""
        if self.bytes_done == 0:  # no rows at all: still a valid CSV with its header
            self.append(pd.DataFrame(columns=self.fingerprint.get("columns", [])))
        self.progress_path.unlink(missing_ok=True)

    # -- closing ---------------------------------------------------------------------------------
    def __exit__(self, *exc) -> None:
        self._release()

    def _release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
