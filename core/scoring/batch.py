"""Score a table of pairs in chunks, with a progress callback and a status for every row.

A bad row never stops the batch: it gets ``status = error`` and its reason. If something breaks
mid-run (the disk, an encoder, a bug), the rows scored so far are kept in the result and ``failure``
says what happened (a fault of this program also logs its traceback); calling again with
``start=result.completed`` carries on, and the rows before it cost nothing since their features are
in the store.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from core.errors import InputError
from core.features.pipeline import encode_pairs
from core.io.labels import HEAD_NAMES, LABELS
from core.scoring.answer import answering_heads

PROBABILITY_COLUMNS = [f"p_{head}_{label}" for head in HEAD_NAMES for label in LABELS]
FLOAT_COLUMNS = [*PROBABILITY_COLUMNS, "confidence"]  # the scored columns that are numbers (NaN where none)

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """How far a batch run is: rows done of total, seconds so far, rows with errors, and the pace of the
    last chunk (rows per second; None until a second chunk is done)."""
    done: int
    total: int
    elapsed_s: float
    errors: int
    recent_rows_per_s: float | None = None

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the pace of the last chunk; None until that pace is known. The first chunk is
        no guide: its pairs may already be in the feature store, or it pays for warming the encoders,
        so an estimate from it alone was off by 10× either way."""
        if self.recent_rows_per_s is None or self.recent_rows_per_s <= 0:
            return None
        return (self.total - self.done) / self.recent_rows_per_s


@dataclass
class BatchResult:
    """What a batch run produced: the scored rows so far, how many are done, and why it stopped if it did."""
    frame: pd.DataFrame          # one row per scored input row, in input order
    completed: int               # rows [0, completed) are in ``frame``
    total: int
    failure: str | None = None   # set when the run stopped early

    @property
    def finished(self) -> bool:
        """True when every row was scored and nothing failed."""
        return self.completed >= self.total and self.failure is None


def scored_chunks(rows: Sequence, predictor, *, chunk_size: int = 64, start: int = 0,
                  errors_before: int = 0) -> Iterator[tuple[pd.DataFrame, Progress]]:
    """Score ``rows`` from ``start`` one chunk at a time, yielding each chunk's result frame with the
    progress so far. An exception (the machine, a bug; never a bad row) ends the iteration; every chunk
    yielded before it is complete, so a caller that kept them can carry on from the next row."""
    started = time.perf_counter()
    n_errors, chunks_done, recent = errors_before, 0, None
    for chunk_start in range(start, len(rows), chunk_size):
        chunk = rows[chunk_start:chunk_start + chunk_size]
        chunk_started = time.perf_counter()
        frame = score_chunk(chunk, predictor)
        n_errors += int((frame["status"] == "error").sum())
        chunks_done += 1
        if chunks_done >= 2:
            recent = len(chunk) / max(time.perf_counter() - chunk_started, 1e-9)
        yield frame, Progress(chunk_start + len(chunk), len(rows), time.perf_counter() - started, n_errors, recent)


def score_rows(rows: Sequence, predictor, *, chunk_size: int = 64, start: int = 0,
               previous: pd.DataFrame | None = None,
               on_progress: Callable[[Progress], None] | None = None,
               should_stop: Callable[[], bool] | None = None,
               on_chunk: Callable[[pd.DataFrame], None] | None = None) -> BatchResult:
    """Score ``rows`` (core.io.tables.PairRow) from ``start``; ``previous`` holds the rows already scored.
    ``on_chunk`` receives each finished chunk before ``on_progress`` hears of it (to save it)."""
    frames = [previous] if previous is not None and len(previous) else []
    done = start
    failure = None
    errors_before = 0 if previous is None else int((previous["status"] == "error").sum())
    try:
        for frame, progress in scored_chunks(rows, predictor, chunk_size=chunk_size, start=start,
                                             errors_before=errors_before):
            if on_chunk:
                on_chunk(frame)
            frames.append(frame)
            done = progress.done
            if on_progress:
                on_progress(progress)
            if should_stop and should_stop() and done < len(rows):
                failure = f"stopped by the user at row {done}"
                break
    except expected_failures() as exc:  # the input, the disk, an encoder: the message says it all
        failure = f"stopped at row {done}: {exc}"
    except Exception as exc:  # a fault of this program: its traceback goes to the log; the rows stay
        log.exception("batch scoring stopped at row %d by an internal error; the %d rows before it are kept",
                      done, done)
        failure = (f"stopped at row {done} by an internal error ({type(exc).__name__}: {exc}); its details are "
                   "in the server's log")
    frame = pd.concat(frames, ignore_index=True) if frames else empty_result()
    return BatchResult(frame, done, len(rows), failure)


def expected_failures() -> tuple[type[BaseException], ...]:
    """What may stop a batch run without being a fault of this program: bad input the user can fix
    (``InputError``), the disk or the network (``OSError``), an encoder that cannot load
    (``EncoderUnavailable``). Their message is the report; anything else also logs its traceback."""
    from core.encoders import EncoderUnavailable

    return InputError, OSError, EncoderUnavailable


def score_chunk(rows: Sequence, predictor) -> pd.DataFrame:
    """Score one chunk of pair rows with ``predictor``: a frame of probabilities, predictions, conflicts and status
    per row."""
    encoded = encode_pairs(rows, predictor.text_encoder, predictor.image_encoder, predictor.store)
    probs = predictor.probabilities(encoded.text, encoded.image, encoded.has_text, encoded.has_image)
    conflicts = predictor.conflicts(probs)
    return _chunk_frame(rows, encoded, probs, conflicts)


def _chunk_frame(rows: Sequence, encoded, probs: dict[str, np.ndarray], conflicts: np.ndarray) -> pd.DataFrame:
    """The result rows of one chunk, built column by column with numpy (a per-row dict of 20 fields
    was most of a warm-store pass). A probability / confidence is NaN where the row failed or the head
    has no input, and its column is float64 whatever the chunk's rows were (so chunks concatenate,
    save and write alike, with no coercion downstream); a prediction is None where it has no
    probabilities."""
    n = len(rows)
    errors = list(encoded.errors)
    has_text, has_image = np.asarray(encoded.has_text, bool), np.asarray(encoded.has_image, bool)
    for i in np.flatnonzero(~has_text & ~has_image):
        if errors[i] is None:
            errors[i] = "neither text nor image to score"
    failed = np.array([e is not None for e in errors], dtype=bool)
    # The text and image cells come back exactly as the user's table held them (the model may have read
    # less of a long text: its message says so); a row built in code shows what the model read.
    columns: dict[str, object] = {
        "row": [row.row for row in rows], "id": [row.id for row in rows],
        "text": [row.text if row.text_cell is None else row.text_cell for row in rows],
        "image": [row.image_cell if row.image_cell is not None else
                  None if row.image_path is None else row.image_path.name for row in rows],
        "label": [row.label for row in rows],
    }
    labels = np.array(LABELS, dtype=object)
    usable, predicted = {}, {}
    for head in HEAD_NAMES:
        p = np.asarray(probs[head], dtype=np.float64)
        usable[head] = ~failed & ~np.isnan(p).any(axis=1)
        rounded = np.round(p, 6)
        for k, label in enumerate(LABELS):
            columns[f"p_{head}_{label}"] = np.where(~failed & ~np.isnan(p[:, k]), rounded[:, k], np.nan)
        predicted[head] = np.where(usable[head], labels[np.nan_to_num(p).argmax(axis=1)], None)
    source = answering_heads(usable)
    prediction = np.full(n, None, dtype=object)
    confidence = np.full(n, np.nan)
    for head in HEAD_NAMES:
        mine = source == head
        prediction[mine] = predicted[head][mine]
        confidence[mine] = np.round(np.nanmax(np.asarray(probs[head], np.float64)[mine], axis=1), 6) \
            if mine.any() else confidence[mine]
    warned = np.array([bool(w) for w in encoded.warnings], dtype=bool)
    columns.update({
        "text_prediction": predicted["text"].tolist(), "image_prediction": predicted["image"].tolist(),
        "prediction": prediction.tolist(),
        "confidence": np.where(source != None, confidence, np.nan),  # noqa: E711 - elementwise
        "prediction_source": source.tolist(),
        "conflict": (~failed & has_text & has_image & np.asarray(conflicts, bool)).tolist(),
        "status": np.where(failed, "error", np.where(warned, "warning", "ok")).tolist(),
        "message": [errors[i] or "; ".join(encoded.warnings[i]) for i in range(n)],
    })
    return pd.DataFrame(columns, columns=result_columns())


def result_columns() -> list[str]:
    """The columns of a scored table, in order."""
    return ["row", "id", "text", "image", "label", *PROBABILITY_COLUMNS, "text_prediction", "image_prediction",
            "prediction", "confidence", "prediction_source", "conflict", "status", "message"]


def empty_result() -> pd.DataFrame:
    """A scored table with no rows."""
    return pd.DataFrame(columns=result_columns())


def head_probabilities(frame: pd.DataFrame, head: str) -> np.ndarray:
    """One head's probability columns of a scored table as an (n, classes) array."""
    return frame[[f"p_{head}_{label}" for label in LABELS]].to_numpy(dtype=float)


def labelled_metrics(frame: pd.DataFrame) -> dict[str, dict] | None:
    """Per-head metrics over the scored rows that have a label and that head's probabilities."""
    from core.io.labels import LABEL_TO_INDEX
    from core.scoring.metrics import classification_metrics

    if "label" not in frame or frame["label"].isna().all():
        return None
    result = {}
    for head in HEAD_NAMES:
        probs = head_probabilities(frame, head)
        usable = frame["label"].notna().to_numpy() & ~np.isnan(probs).any(axis=1)
        if usable.sum() == 0:
            continue
        y = frame.loc[usable, "label"].map(LABEL_TO_INDEX).to_numpy(dtype=int)
        result[head] = classification_metrics(y, probs[usable])
    return result or None
