"""``train``, ``finetune-text`` and ``resplit``: head versions and the text adapter from labelled CSVs."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from core.io.labels import HEAD_NAMES


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
        if split in card.metrics:
            for head in HEAD_NAMES:
                m = card.metrics[split][head]
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


def register(sub) -> None:
    """Add this group's subcommands to the CLI's subparsers."""
    from core import config
    from core.encoders import DEFAULT_IMAGE_SPEC, DEFAULT_TEXT_SPEC, MINILM_SPEC
    from core.heads.training import TrainConfig

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
