"""``score``, ``eval`` and ``explain``: the served model on a table or one pair."""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from core.cli.common import ProgressBar, add_table_arguments, load_predictor, read_rows
from core.cli.ray import add_ray_arguments, score_on_ray_command
from core.errors import InputError
from core.io.labels import HEAD_NAMES

log = logging.getLogger("core.cli")


def _check_writable(out: Path) -> None:
    """InputError (the CLI's clear one-line error) when ``out`` cannot be written: its folder is
    missing or read-only, or it is a folder itself."""
    import os

    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name such as {out / 'scored.csv'}")
    if not folder.is_dir():
        raise InputError(f"--out {out}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise InputError(f"--out {out}: this user cannot write there")


def _score_fingerprint(args, predictor, columns: list[str]) -> dict:
    """What a scored file's rows depend on: a partial output is continued only under the same."""
    from core.scoring.stream import file_sha256

    return {"input_sha256": file_sha256(Path(args.csv)), "head_sha256": predictor.card.weights_sha256,
            "text_features": predictor.text_encoder.feature_key,
            "image_features": predictor.image_encoder.feature_key,
            "images": str(Path(args.images).resolve()) if args.images else None,
            "column_choice": [args.text_column, args.image_column, args.label_column, args.id_column],
            "columns": columns}


def cmd_score(args) -> int:
    """``score``: score a CSV with the active (or given) head, appending each finished chunk to ``--out``;
    a rerun after a crash or ``kill -9`` continues where the file ends. Returns the exit status."""
    from core.scoring.batch import empty_result, scored_chunks
    from core.scoring.output import with_input_columns
    from core.scoring.stream import StreamedCsv

    if args.engine == "ray":
        return score_on_ray_command(args)
    out = Path(args.out)
    _check_writable(out)  # before any work: a long run must not fail at its last step
    progress_file = out.with_name(out.name + ".progress.json")
    if args.resume and not progress_file.exists():
        raise InputError(f"--resume: {out} has no unfinished run to continue (no {progress_file.name} beside it)")
    predictor = load_predictor(args.head, args.device)
    table, rows = read_rows(args, require_label=False)
    columns = list(with_input_columns(empty_result().assign(row=[]), table).columns)
    started = time.perf_counter()
    bar = ProgressBar()
    with StreamedCsv(out, _score_fingerprint(args, predictor, columns), restart=args.restart) as output:
        first = output.rows_done
        if output.resuming:
            print(f"continuing {out}: rows 1–{first:,} are already scored", file=sys.stderr)
        try:
            for frame, progress in scored_chunks(rows, predictor, start=first):
                output.append(with_input_columns(frame, table))
                bar(progress)
        except KeyboardInterrupt:
            bar.close()
            print(f"stopped at row {output.rows_done:,}; the rows scored so far are in {out}. "
                  "Run the same command again to continue.", file=sys.stderr)
            return 130
        except OSError as error:
            bar.close()
            raise InputError(f"could not write {out} ({error.strerror or error}); the {output.rows_done:,} rows "
                             f"before it are safe. Free space or fix the folder, then run the same command "
                             "again to continue.") from None
        except Exception:  # a fault of this program: the rows on disk stay and a rerun resumes
            bar.close()
            log.exception("stopped at row %s by an internal error; the rows before it are in %s: run the same "
                          "command again to continue", f"{output.rows_done:,}", out)
            return 1
        output.finish()
    bar.close()
    seconds = time.perf_counter() - started
    scored_now = len(rows) - first
    n_errors = _count_errors(out)
    print(f"scored {scored_now:,} rows in {seconds:.1f}s ({scored_now / max(seconds, 1e-9):.1f} rows/s)"
          + (f" after the {first:,} already done" if first else "")
          + f"; {len(rows):,} rows in all, {n_errors:,} row errors → {out}")
    if not args.no_run:
        from core.cli.runs import save_score_run

        save_score_run(out, source=Path(args.csv).name, card=predictor.card, rows=rows)
    return 0


def _count_errors(out: Path) -> int:
    """Rows with status 'error' in a finished scored CSV (read back: a resumed run scored only part of it)."""
    import pandas as pd

    return int((pd.read_csv(out, usecols=["status"], encoding="utf-8-sig")["status"] == "error").sum())


def cmd_eval(args) -> int:
    """``eval``: metrics of the three heads on a labelled CSV, printed and optionally written as JSON; returns the
    exit status."""
    from core.encoders import encoder_status
    from core.machine import describe_machine, machine_block
    from core.scoring.batch import labelled_metrics, score_rows

    predictor = load_predictor(args.head, args.device)
    _, rows = read_rows(args, require_label=True)
    progress = ProgressBar()
    result = score_rows(rows, predictor, on_progress=progress)
    progress.close()
    metrics = labelled_metrics(result.frame) or {}
    report = {"n": int((result.frame["status"] != "error").sum()), "n_rows": len(rows),
              "row_errors": int((result.frame["status"] == "error").sum()),
              "head_version": predictor.card.version, **metrics,
              "encoders": {kind: encoder_status(enc) for kind, enc in
                           (("text", predictor.text_encoder), ("image", predictor.image_encoder))},
              "machine": machine_block()}
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    for head in HEAD_NAMES:
        if head in metrics:
            m = metrics[head]
            print(f"{head:>6}: n={m['n']}  accuracy {m['accuracy']:.4f}  weighted F1 {m['weighted_f1']:.4f}  "
                  f"macro F1 {m['macro_f1']:.4f}  ECE {m['ece']:.4f}")
    print(f"measured on: {describe_machine(report['machine'])}")
    for status in report["encoders"].values():
        if status.get("int8_check"):
            print(f"image encoder: {status['int8_check']['summary']}")
        if status.get("notice"):
            print(f"warning: {status['notice']}", file=sys.stderr)
    return 0


def cmd_explain(args) -> int:
    """``explain``: print word attributions and image saliency for one pair; returns the exit status."""
    from core.scoring.explain import explain_pair, format_explanation

    predictor = load_predictor(args.head)
    image = Path(args.image).read_bytes() if args.image else None
    explanation = explain_pair(predictor, args.text, image)
    print(format_explanation(explanation))
    return 0


def register(sub) -> None:
    """Add this group's subcommands to the CLI's subparsers."""

    score = sub.add_parser("score", help="score a CSV of text + image pairs")
    add_table_arguments(score)
    score.add_argument("--out", required=True, help="the scored CSV, written as rows finish (with --engine ray: a folder of partitions); if a run stopped "
                       "before the end, the same command continues it")
    score.add_argument("--resume", action="store_true",
                       help="insist on continuing an unfinished --out (an error when there is none)")
    score.add_argument("--restart", action="store_true",
                       help="score from the beginning even if --out holds an unfinished run")
    score.add_argument("--no-run", action="store_true",
                       help="do not save the finished scoring as a run (by default it is, and `run: <id>` is printed last)")
    add_ray_arguments(score)
    score.set_defaults(run=cmd_score)

    evaluate = sub.add_parser("eval", help="metrics of the three heads on a labelled CSV")
    add_table_arguments(evaluate)
    evaluate.add_argument("--json", default=None, help="write the metrics here")
    evaluate.set_defaults(run=cmd_eval)

    explain = sub.add_parser("explain", help="why: word attributions and image saliency for one pair")
    explain.add_argument("--text", default=None)
    explain.add_argument("--image", default=None, help="path to an image file")
    explain.add_argument("--head", default=None)
    explain.set_defaults(run=cmd_explain)
