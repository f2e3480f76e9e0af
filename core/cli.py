"""Command line: the app's operations from a shell.

    python -m core.cli score  --csv pairs.csv --images DIR --out scored.csv
    python -m core.cli eval   --csv test.csv  --images DIR --json metrics.json [--head VERSION_OR_PATH]
    python -m core.cli train  --train train.csv --dev dev.csv --images DIR --out DIR [--test test.csv]
    python -m core.cli finetune-text --train train.csv --dev dev.csv --out DIR
    python -m core.cli explain --text "..." --image photo.jpg
    python -m core.cli encoders
    python -m core.cli resplit --seeds 1 2 3 4 5 [--frozen] --out DIR [--json FILE]
    python -m core.cli versions | activate VERSION | rollback | delete VERSION | import ZIP | export VERSION --out ZIP
    python -m core.cli hash-password          # the operator password's hash for the app (read from a prompt or stdin)

The command line acts as the operator of its own MMSA_HOME: whoever runs it is the machine's user.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from core.io.labels import HEAD_NAMES


def _add_columns(parser: argparse.ArgumentParser, label_default: str | None) -> None:
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--label-column", default=label_default)
    parser.add_argument("--id-column", default=None)


def _add_table_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments ``score`` and ``eval`` share: the CSV, its image folder, the head, the columns."""
    parser.add_argument("--csv", required=True)
    parser.add_argument("--images", default=None, help="folder the image column is relative to (default: the CSV's folder)")
    parser.add_argument("--head", default=None, help="head version id or version folder (default: active)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: $MMSA_DEVICE, else auto)")
    _add_columns(parser, "label")


def _predictor(head: str | None, device: str | None = None):
    from core.scoring.predict import load_default_predictor

    if head and Path(head).is_dir():
        return load_default_predictor(head_path=head, device=device)
    return load_default_predictor(version=head, device=device)


def _read_rows(args, require_label: bool):
    from core.io.tables import prepare_pairs, read_table

    frame = read_table(Path(args.csv))
    label_column = args.label_column if args.label_column in frame.columns else None
    id_column = args.id_column or ("id" if "id" in frame.columns else None)
    if require_label and label_column is None:
        raise SystemExit(f"error: the CSV has no label column '{args.label_column}' "
                         f"(columns found: {', '.join(frame.columns)})")
    return frame, prepare_pairs(frame, text_column=args.text_column, image_column=args.image_column,
                                label_column=label_column, id_column=id_column,
                                images_root=Path(args.images) if args.images else Path(args.csv).resolve().parent)


class _ProgressBar:
    """Scoring progress as a tqdm bar on stderr (rows, errors, rate, ETA); silent when stderr is not a
    terminal, so logs and pipes get only the final summary line."""

    def __init__(self):
        self.bar = None

    def __call__(self, progress) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=progress.total, unit="row", file=sys.stderr, disable=None, dynamic_ncols=True)
        self.bar.set_postfix(errors=progress.errors, refresh=False)
        self.bar.update(progress.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check_writable(out: Path) -> None:
    """ValueError (the CLI's clear one-line error) when ``out`` cannot be written: its folder is
    missing or read-only, or it is a folder itself."""
    import os

    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name such as {out / 'scored.csv'}")
    if not folder.is_dir():
        raise ValueError(f"--out {out}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ValueError(f"--out {out}: this user cannot write there")


def _score_fingerprint(args, predictor, columns: list[str]) -> dict:
    """What a scored file's rows depend on: a partial output is continued only under the same."""
    from core.scoring.stream import file_sha256

    return {"input_sha256": file_sha256(Path(args.csv)), "head_sha256": predictor.card.get("weights_sha256"),
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
    from core.scoring.stream import ResumeError, StreamedCsv

    if args.engine == "ray":
        return _score_on_ray(args)
    out = Path(args.out)
    _check_writable(out)  # before any work: a long run must not fail at its last step
    progress_file = out.with_name(out.name + ".progress.json")
    if args.resume and not progress_file.exists():
        raise ValueError(f"--resume: {out} has no unfinished run to continue (no {progress_file.name} beside it)")
    predictor = _predictor(args.head, args.device)
    table, rows = _read_rows(args, require_label=False)
    columns = list(with_input_columns(empty_result().assign(row=[]), table).columns)
    started = time.perf_counter()
    bar = _ProgressBar()
    try:
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
                raise ValueError(f"could not write {out} ({error.strerror or error}); the {output.rows_done:,} rows "
                                 f"before it are safe. Free space or fix the folder, then run the same command "
                                 "again to continue.") from None
            except Exception as error:  # noqa: BLE001 - the rows on disk stay; the rerun resumes
                bar.close()
                print(f"error: stopped at row {output.rows_done:,}: {type(error).__name__}: {error}. The rows "
                      f"before it are in {out}; run the same command again to continue.", file=sys.stderr)
                return 1
            output.finish()
    except ResumeError as error:
        raise ValueError(str(error)) from None
    bar.close()
    seconds = time.perf_counter() - started
    scored_now = len(rows) - first
    n_errors = _count_errors(out)
    print(f"scored {scored_now:,} rows in {seconds:.1f}s ({scored_now / max(seconds, 1e-9):.1f} rows/s)"
          + (f" after the {first:,} already done" if first else "")
          + f"; {len(rows):,} rows in all, {n_errors:,} row errors → {out}")
    return 0


def _count_errors(out: Path) -> int:
    """Rows with status 'error' in a finished scored CSV (read back: a resumed run scored only part of it)."""
    import pandas as pd

    return int((pd.read_csv(out, usecols=["status"], encoding="utf-8-sig")["status"] == "error").sum())


def _score_on_ray(args) -> int:
    """``score --engine ray``: the table scored on Ray into partition files under ``--out`` (a folder); a rerun
    with the same ``--out`` scores only the partitions still missing."""
    from core.scoring.distributed import (
        SHARED_IMAGES_HINT,
        RayOptions,
        RayRunFailed,
        RayUnavailable,
        head_version,
        read_pairs_table,
        score_on_ray,
    )

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: with --engine ray, --out is a folder of partition files; {out} is a file")
    tensors, card = head_version(args.head)
    options = RayOptions(address=args.address, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                         gpus_per_worker=args.gpus_per_worker, partition_rows=args.partition_rows, format=args.format)
    images = Path(args.images) if args.images else Path(args.csv).resolve().parent
    print(f"Ray engine: {SHARED_IMAGES_HINT}; images from {images}", file=sys.stderr)
    progress = _ProgressBar()
    try:
        table = read_pairs_table(args.csv)
        result = score_on_ray(args.csv, out, table=table, tensors=tensors, card=card, images_root=images,
                              text_column=args.text_column, image_column=args.image_column,
                              label_column=args.label_column if args.label_column in table.columns else None,
                              id_column=args.id_column or ("id" if "id" in table.columns else None),
                              options=options,
                              on_progress=lambda p: progress(_RowProgress(p.done_rows, p.total_rows, p.errors)))
    except RayUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RayRunFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"stopped; the finished partitions are kept in {out}: run the same command again to score the rest",
              file=sys.stderr)
        return 130
    finally:
        progress.close()
    rate = result.scored_rows / max(result.seconds, 1e-9)
    print(f"scored {result.scored_rows}/{result.total_rows} rows on Ray in {result.seconds:.1f}s ({rate:.1f} rows/s, "
          f"{result.startup_s:.1f}s to start Ray, first partition after {result.first_partition_s or 0:.1f}s), "
          f"{result.errors} row errors → {out}/ "
          f"({result.total_partitions} partitions, {len(result.skipped)} finished before and skipped)")
    return 0


class _RowProgress:
    """The fields ``_ProgressBar`` reads, from a distributed run's progress."""

    def __init__(self, done: int, total: int, errors: int):
        self.done, self.total, self.errors = done, total, errors


def cmd_eval(args) -> int:
    """``eval``: metrics of the three heads on a labelled CSV, printed and optionally written as JSON; returns the
    exit status."""
    from core.encoders import encoder_status
    from core.machine import describe_machine, machine_block
    from core.scoring.batch import labelled_metrics, score_rows

    predictor = _predictor(args.head, args.device)
    _, rows = _read_rows(args, require_label=True)
    progress = _ProgressBar()
    result = score_rows(rows, predictor, on_progress=progress)
    progress.close()
    metrics = labelled_metrics(result.frame) or {}
    report = {"n": int((result.frame["status"] != "error").sum()), "n_rows": len(rows),
              "row_errors": int((result.frame["status"] == "error").sum()),
              "head_version": predictor.card.get("version"), **metrics,
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


def cmd_train(args) -> int:
    """``train``: build a head version folder from labelled CSVs with the recipe; returns the exit status."""
    from core.heads.recipe import build_head
    from core.heads.training import TrainConfig

    train_config = TrainConfig(hidden=args.hidden, members=args.members, dropout=args.dropout, max_epochs=args.epochs, seed=args.seed,
                               class_weighting=args.class_weighting, branch_labels=args.branch_labels)
    card = build_head(Path(args.train), Path(args.dev), Path(args.images), Path(args.out),
                      text_spec=args.text_encoder, image_spec=args.image_encoder, text_adapter=args.text_adapter,
                      test_csv=Path(args.test) if args.test else None, train_config=train_config, note=args.note)
    for split in ("dev", "test"):
        if split in card["metrics"]:
            for head in HEAD_NAMES:
                m = card["metrics"][split][head]
                print(f"{split} {head:>6}: accuracy {m['accuracy']:.4f}  weighted F1 {m['weighted_f1']:.4f}  "
                      f"ECE {m['ece']:.4f} (uncalibrated {m['ece_uncalibrated']:.4f})")
    return 0


def cmd_finetune_text(args) -> int:
    """``finetune-text``: LoRA-fine-tune the text encoder on labelled texts into an adapter folder; returns the
    exit status."""
    from core.encoders.finetune import FinetuneConfig, finetune_text_encoder
    from core.io.labels import LABEL_TO_INDEX, normalise_label
    from core.io.tables import read_table

    def texts_and_labels(path):
        frame = read_table(Path(path))
        keep = frame[args.text_column].fillna("").str.strip() != ""
        frame = frame[keep]
        return list(frame[args.text_column]), [LABEL_TO_INDEX[normalise_label(v)] for v in frame[args.label_column]]

    train_texts, train_labels = texts_and_labels(args.train)
    dev_texts, dev_labels = texts_and_labels(args.dev)
    import numpy as np
    summary = finetune_text_encoder(train_texts, np.array(train_labels), dev_texts, np.array(dev_labels),
                                    Path(args.out), spec=args.text_encoder,
                                    config=FinetuneConfig(epochs=args.epochs, lr=args.lr, seed=args.seed),
                                    on_step=lambda row: print(json.dumps(row), flush=True))
    print(json.dumps(summary["best"]))
    return 0


def cmd_explain(args) -> int:
    """``explain``: print word attributions and image saliency for one pair; returns the exit status."""
    from core.scoring.explain import explain_pair, format_explanation

    predictor = _predictor(args.head)
    image = Path(args.image).read_bytes() if args.image else None
    explanation = explain_pair(predictor, args.text, image)
    print(format_explanation(explanation))
    return 0


def cmd_quantize_image(args) -> int:
    """``quantize-image``: rebuild the int8 image graph from calibration pictures; returns the exit status."""
    from core.encoders.quantize import build_int8_image_graph, calibration_files

    files = calibration_files(Path(args.csv), Path(args.images), n=args.n)
    card = build_int8_image_graph(files, Path(args.out), source=f"first {len(files)} pictures of {Path(args.csv).name}")
    print(json.dumps(card, indent=2))
    return 0


def cmd_encoders(args) -> int:
    """``encoders``: list the known specs, whether each loads here, and the int8 check; returns the exit status."""
    from core.device import choose_device, describe_device
    from core.encoders import EncoderUnavailable, known_specs, load_image_encoder, load_text_encoder

    print(f"device: {describe_device(choose_device())} (MMSA_DEVICE: auto, cpu, cuda or cuda:N)")
    for kind, spec in known_specs():
        loader = load_text_encoder if kind == "text" else load_image_encoder
        try:
            encoder = loader(spec)
            print(f"{kind:5}  {spec:32}  loads   {encoder.dim}-d  id {encoder.id}")
            check = getattr(encoder, "check", None)
            if check is not None:
                print(f"{'':5}  {'':32}  {check.summary()}; runs as {encoder.runtime}")
            if encoder.notice:
                print(f"{'':5}  {'':32}  warning: {encoder.notice}")
        except EncoderUnavailable as exc:
            print(f"{kind:5}  {spec:32}  unavailable: {str(exc)[:160]}")
    return 0


def _registry():
    from core.registry import open_registry
    return open_registry()  # acts as the machine's user: the operator of this MMSA_HOME


def cmd_versions(args) -> int:
    """``versions``: every head version, the active one marked, damaged ones with the reason, who last activated each."""
    registry = _registry()
    active, _ = registry.serving()  # a fallback to the shipped default is logged as a warning
    last = {}
    for event in registry.events():
        if event.get("action") in ("activated", "rolled back to"):
            last[event.get("version")] = f"{event.get('action')} {event.get('at', '')} by {event.get('by', '?')}"
    for card in registry.versions():
        mark = "*" if card["version"] == active else " "
        created = (card.get("created_at") or "")[:19] or ("shipped" if card.get("builtin") else "")
        line = f"{mark} {card['version']:28} {created:19}  {card.get('note') or ''}"
        if card.get("damaged"):
            line += f"  DAMAGED: {card['damaged']}"
        if card["version"] in last:
            line += f"  [{last[card['version']]}]"
        print(line.rstrip())
    return 0


def cmd_activate(args) -> int:
    """``activate``: make a version the one the app and the CLI serve."""
    registry = _registry()
    registry.activate(args.version)
    print(f"version {registry.active_version()} is active")
    return 0


def cmd_rollback(args) -> int:
    """``rollback``: re-activate the previously active version."""
    print(f"rolled back: version {_registry().rollback()} is active")
    return 0


def cmd_delete(args) -> int:
    """``delete``: remove a saved version (not the active one, not the shipped default)."""
    _registry().delete(args.version)
    print(f"version {args.version} deleted")
    return 0


def cmd_import(args) -> int:
    """``import``: store a version zip (checked against the active version's encoders and shapes), not activated."""
    registry = _registry()
    tensors, card = registry.load(registry.active_version())
    expected = {"text_encoder": {"id": card["text_encoder"]["id"], "dim": card["text_encoder"]["dim"]},
                "image_encoder": {"id": card["image_encoder"]["id"], "dim": card["image_encoder"]["dim"]},
                "tensor_shapes": {name: tuple(t.shape) for name, t in tensors.items()}}
    version = registry.import_zip(Path(args.zip).read_bytes(), expected=expected)
    print(f"imported as version {version} (not active: `python -m core.cli activate {version}`)")
    return 0


def cmd_export(args) -> int:
    """``export``: write a version's zip (weights + card) for another machine."""
    Path(args.out).write_bytes(_registry().export_zip(args.version))
    print(f"wrote {args.out}")
    return 0


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


def cmd_resplit(args) -> int:
    """``resplit``: accuracy over random re-splits of the pooled data, optionally attached to a card; returns the
    exit status."""
    from core.heads.resplit import resplit_accuracy

    data = Path(args.data)
    csvs = [Path(p) for p in args.csv] if args.csv else [data / f"{name}.csv" for name in ("train", "dev", "test")]
    images = Path(args.images) if args.images else data / "images"

    def scores(entry, head):
        return f"{head} {entry[head]['accuracy']:.4f}/{entry[head]['weighted_f1']:.4f}"

    def on_split(entry):
        print(f"seed {entry['seed']:>4}: {entry['n_train']}/{entry['n_dev']}/{entry['n_test']}  acc/wF1  "
              + "  ".join(scores(entry, head) for head in HEAD_NAMES) + f"  ({entry['seconds']:.0f}s)", flush=True)

    report = resplit_accuracy(csvs, images, Path(args.out), seeds=args.seeds, frozen=args.frozen,
                              on_split=on_split, log=lambda line: print(line, file=sys.stderr, flush=True))
    if report["protocol"]["unusable"]:
        print(f"{len(report['protocol']['unusable'])} rows could not be used, e.g. "
              f"{report['protocol']['unusable'][0]} (all in the JSON)")
    k = len(report["splits"])
    print(f"\n{'frozen text encoder' if args.frozen else 'LoRA adapter per split'}, {k} split"
          f"{'s' if k > 1 else ''} of {report['protocol']['pool']} pairs; test, mean ± sd [min, max]")
    for head in HEAD_NAMES:
        cells = []
        for metric, name in (("accuracy", "accuracy"), ("weighted_f1", "weighted F1")):
            s = report["summary"][head][metric]
            sd = "" if s["sd"] is None else f" ± {s['sd']:.4f}"
            cells.append(f"{name} {s['mean']:.4f}{sd} [{s['min']:.4f}, {s['max']:.4f}]")
        print(f"{head:>6}: " + "   ".join(cells))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"per split and summary: {args.json or Path(args.out) / 'resplit.json'}")
    if args.attach:
        from core.heads.resplit import attach_to_card

        attach_to_card(report, args.attach)
        print(f"summary recorded in {Path(args.attach) / 'card.json'} (shown on Home beside the test figures)")
    return 0


def _add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """``score``'s engine choice and the Ray engine's settings (docs/scaling.md)."""
    from core.scoring.distributed import PARTITION_ROWS

    ray = parser.add_argument_group("distributed scoring (pip install -r requirements-ray.txt)")
    ray.add_argument("--engine", choices=["local", "ray"], default="local",
                     help="local: this process (default); ray: a Ray cluster, every worker reading the images at "
                          "the same path")
    ray.add_argument("--address", default=None,
                     help="Ray cluster address: auto or HEAD_IP:6379 (default: RAY_ADDRESS, else a local Ray)")
    ray.add_argument("--workers", type=int, default=1, help="scoring actors, each loading the model once")
    ray.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs (and threads) each actor holds")
    ray.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs each actor holds")
    ray.add_argument("--partition-rows", type=int, default=PARTITION_ROWS,
                     help="rows per partition file, the unit a rerun skips when it is finished")
    ray.add_argument("--format", choices=["parquet", "csv"], default="parquet", help="partition file format")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand, each with its ``run`` function as a default."""
    from core.encoders import DEFAULT_IMAGE_SPEC, DEFAULT_TEXT_SPEC, MINILM_SPEC
    from core.heads.training import TrainConfig

    parser = argparse.ArgumentParser(prog="python -m core.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="score a CSV of text + image pairs")
    _add_table_arguments(score)
    score.add_argument("--out", required=True, help="the scored CSV, written as rows finish (with --engine ray: a folder of partitions); if a run stopped "
                       "before the end, the same command continues it")
    score.add_argument("--resume", action="store_true",
                       help="insist on continuing an unfinished --out (an error when there is none)")
    score.add_argument("--restart", action="store_true",
                       help="score from the beginning even if --out holds an unfinished run")
    _add_ray_arguments(score)
    score.set_defaults(run=cmd_score)

    evaluate = sub.add_parser("eval", help="metrics of the three heads on a labelled CSV")
    _add_table_arguments(evaluate)
    evaluate.add_argument("--json", default=None, help="write the metrics here")
    evaluate.set_defaults(run=cmd_eval)

    train = sub.add_parser("train", help="train a head version on labelled CSVs")
    train.add_argument("--train", required=True)
    train.add_argument("--dev", required=True)
    train.add_argument("--test", default=None, help="evaluated once at the end; never used for choices")
    train.add_argument("--images", required=True)
    train.add_argument("--out", required=True)
    train.add_argument("--text-encoder", default=DEFAULT_TEXT_SPEC)
    train.add_argument("--text-adapter", default=None, help="LoRA adapter folder from finetune-text")
    train.add_argument("--image-encoder", default=DEFAULT_IMAGE_SPEC)
    defaults = TrainConfig()
    train.add_argument("--hidden", type=int, default=defaults.hidden, help="units of each member MLP")
    train.add_argument("--members", type=int, default=defaults.members, help="MLPs averaged per head")
    train.add_argument("--dropout", type=float, default=defaults.dropout)
    train.add_argument("--epochs", type=int, default=defaults.max_epochs)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--class-weighting", choices=["none", "sqrt", "inverse"], default=defaults.class_weighting)
    train.add_argument("--branch-labels", choices=["pair", "modality"], default=defaults.branch_labels)
    train.add_argument("--note", default="")
    train.set_defaults(run=cmd_train)

    finetune = sub.add_parser("finetune-text", help="LoRA-fine-tune the text encoder on labelled texts")
    finetune.add_argument("--train", required=True)
    finetune.add_argument("--dev", required=True)
    finetune.add_argument("--out", required=True)
    finetune.add_argument("--text-encoder", default=MINILM_SPEC)
    finetune.add_argument("--text-column", default="text")
    finetune.add_argument("--label-column", default="label")
    finetune.add_argument("--epochs", type=int, default=2)
    finetune.add_argument("--lr", type=float, default=5e-4)
    finetune.add_argument("--seed", type=int, default=0)
    finetune.set_defaults(run=cmd_finetune_text)

    explain = sub.add_parser("explain", help="why: word attributions and image saliency for one pair")
    explain.add_argument("--text", default=None)
    explain.add_argument("--image", default=None, help="path to an image file")
    explain.add_argument("--head", default=None)
    explain.set_defaults(run=cmd_explain)

    quantize = sub.add_parser("quantize-image", help="rebuild the int8 EfficientNet-Lite0 graph from calibration "
                              "pictures (training data, never test)")
    quantize.add_argument("--csv", required=True, help="CSV whose image column names the calibration pictures")
    quantize.add_argument("--images", required=True)
    quantize.add_argument("--out", default="assets/models/efficientnet-lite0-int8")
    quantize.add_argument("--n", type=int, default=512, help="calibration pictures (the first N)")
    quantize.set_defaults(run=cmd_quantize_image)

    encoders = sub.add_parser("encoders", help="list encoder specs and whether they load here")
    encoders.set_defaults(run=cmd_encoders)

    from core import config
    resplit = sub.add_parser("resplit", help="retrain the shipped recipe on K seeded random re-splits of the "
                             "pooled CSVs; each split's test scores and their mean ± sd")
    resplit.add_argument("--data", default=str(config.mvsa_dir()),
                         help="folder with train/dev/test.csv and images/ (default: MVSA-Single)")
    resplit.add_argument("--csv", action="append", default=None,
                         help="a labelled CSV to pool (repeat; default: train, dev and test.csv of --data)")
    resplit.add_argument("--images", default=None, help="folder the image column is relative to (default: --data/images)")
    resplit.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="one split per seed")
    resplit.add_argument("--frozen", action="store_true",
                         help="plain text encoder, no LoRA adapter per split (seconds instead of minutes a split)")
    resplit.add_argument("--out", required=True, help="folder for each split's CSVs, adapter and head")
    resplit.add_argument("--json", default=None, help="also write the report here (always in --out/resplit.json)")
    resplit.add_argument("--attach", default=None, metavar="HEAD_DIR",
                         help="record the summary in this head version folder's card.json (e.g. assets/models/default)")
    resplit.set_defaults(run=cmd_resplit)

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
    sub.add_parser("hash-password", help="print the hash of an operator password for the app's settings "
                   "(read from a prompt or stdin, never from the command line)").set_defaults(run=cmd_hash_password)
    return parser


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _log_warnings_as_lines() -> None:
    """Warnings the engine logs (the shipped default serving in place of a damaged version, a damaged
    feature store moved aside) reach the user as ``warning: …`` lines on stderr, like the CLI's own."""
    root = logging.getLogger()
    if not root.handlers:  # leave a caller's logging set-up (the tests', an embedding program's) alone
        handler = logging.StreamHandler()
        handler.setFormatter(_OneLine())
        root.addHandler(handler)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line), run the subcommand, return its exit status; bad input gives one
    clear line and status 2."""
    args = build_parser().parse_args(argv)
    import warnings

    from core.encoders import EncoderUnavailable

    # Notices (a damaged cache rebuilt, a store that cannot be written) read as one line each.
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"warning: {message}\n"
    _log_warnings_as_lines()

    try:
        return args.run(args)
    # Bad input (a CSV without its columns, an undecodable image, a head for other encoders, a
    # missing file) is the user's to fix: one clear line, no traceback.
    except (ValueError, EncoderUnavailable, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
