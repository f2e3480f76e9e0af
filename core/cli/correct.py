"""``correct``: adapt the served heads to a labelled CSV of the user's own posts (text, and a picture where
given), print how much they learned on held-out labels, and with ``--save`` store it as a version."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from core.cli.common import add_columns, load_predictor, read_rows


def _pct(value) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _interval(entry: dict) -> str:
    return f"{_pct(entry['accuracy'])} [{_pct(entry['low'])}, {_pct(entry['high'])}] of {entry['n']}"


def cmd_correct(args) -> int:
    """``correct``: the Correct page's adaptation from a shell; returns the exit status."""
    from core.heads.adaptation import AdaptationConfig, replay_choice_text
    from core.heads.adaptation_run import adapted_card, run_adaptation
    from core.heads.reference import load_reference_set

    predictor = load_predictor(args.head, args.device)
    _, rows = read_rows(args, require_label=True)
    reference = load_reference_set(predictor.text_encoder, predictor.image_encoder, predictor.store)
    replay, check = reference.split()
    config = AdaptationConfig(replay_weight=args.replay_weight, text_replay_weight=args.text_replay_weight)
    run = run_adaptation(predictor, rows, replay, check, config, reference_name=reference.name,
                         on_step=lambda message, done: print(f"[{done:4.0%}] {message}", file=sys.stderr, flush=True))
    adapter = run.adapter
    for problem in run.labelled.problems:
        print(f"left out: {problem}", file=sys.stderr)
    protocol = adapter.protocol_
    print(f"{protocol['n_labels']} labelled posts ({protocol['with_image']} with a picture); measured by "
          f"{protocol['kind']} on {protocol['n_measured']} posts the measured heads never saw")
    print(f"your posts  before: {_interval(adapter.evaluation_['before'])}")
    print(f"your posts   after: {_interval(adapter.evaluation_['after'])}")
    print(f"against the version it adapts: {adapter.vs_parent_['message']}")
    for point in adapter.curve_:
        print(f"  learning curve: {point['labels_used']:6.0f} labels → {_interval(point)}")
    print(f"more labels worth giving? {adapter.verdict_['message']}")
    if adapter.reference_:
        before, after = adapter.reference_["before"], adapter.reference_["after"]
        print(f"reference ({run.reference_name}, {adapter.reference_['n']} held-out pairs): " + "  ".join(
            f"{head} {_pct(before[head])} → {_pct(after[head])}" for head in ("fused", "text", "image")))
    if adapter.replay_choice_:
        print(replay_choice_text(adapter.replay_weight_, adapter.replay_choice_))
    print(f"adapted heads: {', '.join(adapter.adapted_heads_)}; {run.seconds:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(adapted_card(predictor.card, run, base_version="").training,
                                              indent=2, default=float))
    if args.save:
        from core.registry import open_registry

        base_version = predictor.card.version
        card = adapted_card(predictor.card, run, base_version=base_version or "")
        version = open_registry().save(adapter.model_.tensors(), card, note=args.note, parent=base_version)
        print("not active: activate it with `python -m core.cli activate " + version + "` when ready")
        print(f"version: {version}")
    return 0


def register(sub) -> None:
    """Add this group's subcommands to the CLI's subparsers."""
    correct = sub.add_parser("correct", help="adapt the served heads to a labelled CSV of your own posts; "
                             "before / after on held-out labels; --save stores a version")
    correct.add_argument("--csv", required=True, help="columns text and label; image optional (relative to --images)")
    correct.add_argument("--images", default=None, help="folder the image column is relative to (default: the CSV's folder)")
    correct.add_argument("--head", default=None, help="head version id or version folder to adapt (default: active)")
    correct.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: $MMSA_DEVICE, else auto)")
    add_columns(correct, "label")
    correct.add_argument("--replay-weight", type=float, default=None,
                         help="weight of the replayed reference pairs for the heads that learn from pictures, as "
                              "a share of your labels (default: the smallest that keeps the reference's fused "
                              "accuracy within 3 points)")
    correct.add_argument("--text-replay-weight", type=float, default=None,
                         help="the same for the text head (default: --replay-weight × the share of your posts "
                              "with a picture, so 0 for a set without pictures)")
    correct.add_argument("--save", action="store_true", help="store the result as a version (not activated); "
                         "its id is the last line, `version: <id>`")
    correct.add_argument("--note", default="", help="note of the saved version")
    correct.add_argument("--json", default=None, help="also write the figures here as JSON")
    correct.set_defaults(run=cmd_correct)
