"""How well does the model learn a new kind of post from a few hundred labels? TweetEval sentiment tweets
(text only) stand for the user's posts.

    python bench/adaptation.py [--sizes 50 100 200 500 1000] [--draws 3] [--no-setfit | --setfit-sizes 50 100 200]
                               [--lora-sizes 1000] [--json FILE]

Labelled sets of each size are drawn from TweetEval ``val.csv`` (``--draws`` per size) and every method
is measured on the same fixed sample of 2,000 texts of ``test.csv`` (drawn once with seed 0; never
trained on or used for a choice):

- shipped:    the shipped head as it is (a post without a picture is answered by its text head),
- correction: today's correction engine (``correct_heads``, default settings) on the same labels; the
              Correct page itself refuses rows without a picture, so each text gets the reference's mean
              picture features,
- adaptation: the Correct page's adaptation mode (``Adapter``: held-out measuring, learning curve, then
              the read-outs fitted on all the labels),
- adaptation_held: the same with the text head held to the reference (``text_replay_weight`` 0.7; the
              default does not hold it for posts without pictures),
- floor:      a logistic regression on the same frozen text features (standardised, C = 1e-3, the best
              C on val draws),
- setfit:     a SetFit-style contrastive fine-tune of the same MiniLM + logistic regression
              (``bench/setfit_style.py``; ``--no-setfit`` skips it),
- lora:       a supervised LoRA fine-tune of the same MiniLM on the labels + logistic regression
              (``bench/lora_style.py``; at ``--lora-sizes``, 1,000 by default; ``--lora-sizes`` alone skips it).

For each: accuracy, macro F1 and each label's recall on the test sample (the class mix of val and of the
test sample is printed too: a method is read at the mix it is measured on), the MVSA reference after (fused and text heads on the
held-out half of MVSA dev that the Correct page checks on; the other half is replayed, as on the page),
and seconds. Then the seconds from click to result for 500 labels as the page runs it (encoding the
texts from an empty feature store included). Prints a table and, last, one JSON line with every figure
and the machine block. Features go through the feature store under ``$MMSA_HOME``: point it at a folder
kept between runs (the first run encodes ~4,000 texts and MVSA dev).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TEST_SAMPLE, TEST_SEED = 2000, 0
FLOOR_C = 1e-3
METHODS = ("shipped", "correction", "adaptation", "adaptation_held", "floor", "setfit", "lora")


def _scores(y_true, y_pred) -> dict:
    from sklearn.metrics import f1_score, recall_score

    from core.io.labels import LABELS

    recall = recall_score(y_true, y_pred, average=None, labels=[0, 1, 2], zero_division=0)
    return {"accuracy": float(np.mean(y_true == y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=[0, 1, 2], zero_division=0)),
            **{f"recall_{label}": float(r) for label, r in zip(LABELS, recall)}}


def _text_only(text, image_mean):
    """Posts without pictures, as PostSet rows."""
    from core.heads.adaptation import PostSet

    return lambda idx, labels: PostSet(text[idx], np.repeat(image_mean, len(idx), 0),
                                       np.zeros(len(idx), bool), labels)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 500, 1000])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--no-setfit", action="store_true", help="skip the SetFit-style fine-tune (minutes per draw)")
    parser.add_argument("--setfit-pairs", type=int, default=2000, help="cap on SetFit-style training pairs")
    parser.add_argument("--setfit-sizes", type=int, nargs="+", default=None,
                        help="label counts the SetFit-style fine-tune runs at (default: every size; ~0.1 s per "
                             "pair on 2 cores, so SetFit's own 40 pairs per label is over an hour at 1,000)")
    parser.add_argument("--lora-sizes", type=int, nargs="*", default=[1000],
                        help="label counts the supervised LoRA fine-tune runs at (none: skip; ~1 min per draw at 1,000)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bench.lora_style import lora_style
    from bench.setfit_style import setfit_style
    from core import config
    from core.features.sets import FeatureSet
    from core.features.store import FeatureStore, text_features
    from core.heads.adaptation import AdaptationConfig, Adapter, served_logits
    from core.heads.adaptation_run import run_adaptation
    from core.heads.correction import CorrectionConfig, correct_heads
    from core.heads.reference import load_reference_set
    from core.heads.training import predict_logits
    from core.io.labels import LABEL_TO_INDEX, LABELS
    from core.io.tables import prepare_pairs, read_table
    from core.machine import describe_machine, machine_block
    from core.registry import read_version_folder
    from core.scoring.predict import Predictor
    from core.threads import start_torch_threads

    start_torch_threads()  # one torch thread, as the app and the `correct` command start (core/threads.py)

    data = config.shared_data_dir() / "tweeteval_sentiment"
    if not (data / "val.csv").is_file():
        raise SystemExit(f"TweetEval sentiment not found in {data}")
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    tensors, card = read_version_folder(config.DEFAULT_HEAD_DIR)
    store = FeatureStore(config.feature_store_path())
    predictor = Predictor.from_card(tensors, card, store)
    base = predictor.heads
    val, test = read_table(data / "val.csv"), read_table(data / "test.csv")
    sample = np.sort(np.random.default_rng(TEST_SEED).choice(len(test), TEST_SAMPLE, replace=False))
    test = test.iloc[sample].reset_index(drop=True)
    started = time.perf_counter()
    val_x = text_features(predictor.text_encoder, store, list(val["text"]))
    test_x = text_features(predictor.text_encoder, store, list(test["text"]))
    val_y = val["label"].map(LABEL_TO_INDEX).to_numpy()
    test_y = test["label"].map(LABEL_TO_INDEX).to_numpy()
    reference = load_reference_set(predictor.text_encoder, predictor.image_encoder, store)
    replay, check = reference.split()
    log(f"features ready in {time.perf_counter() - started:.0f} s; reference {reference.name}, "
        f"checked on {len(check)} held-out pairs")
    image_mean = base.image_mean.numpy()[None, :]
    posts = _text_only(val_x, image_mean)
    test_posts = _text_only(test_x, image_mean)(np.arange(len(test_y)), test_y)

    def on_reference(model) -> dict:
        logits = predict_logits(model, check)
        return {head: float((logits[head].argmax(1) == check.labels).mean()) for head in ("fused", "text")}

    def served(model) -> np.ndarray:
        return served_logits(model, test_posts)[1].argmax(1)

    shipped = {**_scores(test_y, served(base)), "reference": on_reference(base), "seconds": 0.0}
    log(f"shipped: {shipped['accuracy']:.1%} on the test sample; reference fused {shipped['reference']['fused']:.1%}")
    class_mix = {name: {label: float(np.mean(y == k)) for k, label in enumerate(LABELS)}
                 for name, y in (("val", val_y), ("test_sample", test_y))}
    log("class mix: " + "; ".join(f"{name} " + " / ".join(f"{label} {share:.1%}" for label, share in mix.items())
                                  for name, mix in class_mix.items()))
    runs = []
    for n in args.sizes:
        for draw in range(args.draws):
            pick = np.sort(np.random.default_rng(1000 + draw).choice(len(val_y), n, replace=False))
            labels = val_y[pick]
            row = {"n": n, "draw": draw, "shipped": shipped}

            t = time.perf_counter()
            corrected = correct_heads(base, FeatureSet(val_x[pick], np.repeat(image_mean, n, 0), labels), replay,
                                      CorrectionConfig()).model
            row["correction"] = {**_scores(test_y, served(corrected)), "reference": on_reference(corrected),
                                 "seconds": time.perf_counter() - t}

            t = time.perf_counter()
            adapter = Adapter(base).fit(posts(pick, labels), replay=replay, check=check)
            row["adaptation"] = {**_scores(test_y, served(adapter.model_)), "reference": on_reference(adapter.model_),
                                 "seconds": time.perf_counter() - t,
                                 "held_out_estimate": adapter.evaluation_["after"]["accuracy"],
                                 "more_labels": adapter.verdict_["answer"], "vs_parent": adapter.vs_parent_["answer"]}

            t = time.perf_counter()
            held = Adapter(base, AdaptationConfig(text_replay_weight=0.7)).fit(posts(pick, labels), replay=replay,
                                                                            check=check)
            row["adaptation_held"] = {**_scores(test_y, served(held.model_)), "reference": on_reference(held.model_),
                                      "seconds": time.perf_counter() - t,
                                      "held_out_estimate": held.evaluation_["after"]["accuracy"]}

            t = time.perf_counter()
            floor = make_pipeline(StandardScaler(), LogisticRegression(C=FLOOR_C, max_iter=3000)).fit(val_x[pick], labels)
            row["floor"] = {**_scores(test_y, floor.predict(test_x)), "seconds": time.perf_counter() - t,
                            "reference": {"text": float((floor.predict(check.text) == check.labels).mean())}}

            if not args.no_setfit and (args.setfit_sizes is None or n in args.setfit_sizes):
                torch.manual_seed(draw)
                tuned = setfit_style(predictor.text_encoder, list(val["text"].iloc[pick]), labels,
                                     list(test["text"]), max_pairs=args.setfit_pairs, seed=draw)
                row["setfit"] = {**_scores(test_y, tuned["predictions"]), "seconds": tuned["seconds"],
                                 "encode_test_seconds": tuned["encode_test_seconds"], "pairs": tuned["pairs"]}
            if n in args.lora_sizes:
                tuned = lora_style(predictor.text_encoder, list(val["text"].iloc[pick]), labels, list(test["text"]),
                                   C=FLOOR_C, seed=draw)
                row["lora"] = {**_scores(test_y, tuned["predictions"]), "seconds": tuned["seconds"],
                               "encode_test_seconds": tuned["encode_test_seconds"]}
            runs.append(row)
            log(f"n={n} draw {draw}: " + "  ".join(f"{m} {row[m]['accuracy']:.1%} ({row[m]['seconds']:.1f}s)"
                                                   for m in METHODS if m in row))

    # Click to result for 500 labels, as the page runs it: rows in, encoding from an empty store included.
    pick = np.sort(np.random.default_rng(1000).choice(len(val_y), 500, replace=False))
    rows = prepare_pairs(val.iloc[pick].reset_index(drop=True), image_column=None, label_column="label")
    cold = Predictor(predictor.text_encoder, predictor.image_encoder, base, card, FeatureStore(None))
    click = run_adaptation(cold, rows, replay, check, reference_name=reference.name)
    log(f"click to result, 500 labels, nothing cached: {click.seconds:.1f} s")

    pairs = _pairs_path(predictor, store, replay, check, log)

    summary = _summary(runs, args.sizes)
    _print_table(summary, shipped)
    result = {"test_sample": {"n": TEST_SAMPLE, "seed": TEST_SEED}, "reference": {"name": reference.name, "check": len(check)},
              "shipped": shipped, "class_mix": class_mix, "summary": summary, "runs": runs, "click_to_result_500_s": click.seconds,
              "pairs_path": pairs,
              "machine": machine_block()}
    print(f"measured on: {describe_machine(result['machine'])}")
    line = json.dumps(result, default=float)
    if args.json:
        Path(args.json).write_text(line)
    print(line)
    return result


def _pairs_path(predictor, store, replay, check, log) -> list[dict]:
    """The path of posts with pictures, where the fused head adapts too: MVSA train pairs labelled by
    their annotators' reading of the text alone (``text_label``, which differs from the pair label on a
    third of them) stand for a user whose labels follow another rule. The fused head must still read
    the reference's pairs within 3 points. (Pairs that also belong to the reference are never drawn:
    train and dev do not overlap.)"""
    from core import config
    from core.heads.adaptation import Adapter, PostSet
    from core.heads.recipe import load_labelled_set

    mvsa = config.mvsa_dir()
    if not (mvsa / "train.csv").is_file():
        return []
    train = load_labelled_set(mvsa / "train.csv", mvsa / "images", predictor.text_encoder,
                              predictor.image_encoder, store).features
    out = []
    for n in (200, 500):
        for draw in range(3):
            pick = np.sort(np.random.default_rng(2000 + draw).choice(len(train), n, replace=False))
            posts = PostSet.from_pairs(train.subset(pick))
            posts.labels = train.text_labels[pick]
            adapter = Adapter(predictor.heads).fit(posts, replay=replay, check=check)
            ref = adapter.reference_
            out.append({"n": n, "draw": draw, "held_out_before": adapter.evaluation_["before"]["accuracy"],
                        "held_out_after": adapter.evaluation_["after"]["accuracy"],
                        "reference_fused_before": ref["before"]["fused"], "reference_fused_after": ref["after"]["fused"],
                        "replay_weight": adapter.replay_weight_, "vs_parent": adapter.vs_parent_["answer"],
                        "seconds": adapter.seconds_})
            log(f"pairs path n={n} draw {draw}: held-out {out[-1]['held_out_before']:.1%} → "
                f"{out[-1]['held_out_after']:.1%}; reference fused {ref['before']['fused']:.1%} → {ref['after']['fused']:.1%} "
                f"(replay weight {adapter.replay_weight_:g}; against the parent: {adapter.vs_parent_['answer']}; "
                f"{adapter.seconds_:.1f} s)")
    return out


def _summary(runs: list[dict], sizes: list[int]) -> dict:
    """Per size and method: mean and sd over draws of accuracy, macro F1, each label's recall, reference
    figures, seconds."""
    from core.io.labels import LABELS

    out = {}
    for n in sizes:
        mine = [r for r in runs if r["n"] == n]
        out[n] = {}
        for method in METHODS:
            entries = [r[method] for r in mine if method in r]
            if not entries:
                continue
            keys = ("accuracy", "macro_f1", "seconds", *(f"recall_{label}" for label in LABELS))
            figures = {key: [e[key] for e in entries if key in e] for key in keys}
            for head in ("fused", "text"):
                values = [e["reference"][head] for e in entries if head in e.get("reference", {})]
                if values:
                    figures[f"reference_{head}"] = values
            out[n][method] = {key: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
                              for key, v in figures.items()}
    return out


def _print_table(summary: dict, shipped: dict) -> None:
    from core.io.labels import LABELS

    def cell(entry, key, scale=100.0, digits=1):
        if key not in entry:
            return "–"
        return f"{entry[key]['mean'] * scale:.{digits}f} ± {entry[key]['sd'] * scale:.{digits}f}"

    print(f"shipped head: accuracy {shipped['accuracy']:.1%}, macro F1 {shipped['macro_f1']:.1%}, "
          f"reference fused {shipped['reference']['fused']:.1%} / text {shipped['reference']['text']:.1%}")
    print("| labels | method | accuracy % | macro F1 % | recall neg / neu / pos % | reference fused % | "
          "reference text % | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n, methods in summary.items():
        for method, entry in methods.items():
            if method == "shipped":
                continue
            recall = " / ".join(f"{entry[f'recall_{label}']['mean'] * 100:.0f}" for label in LABELS
                                if f"recall_{label}" in entry) or "–"
            print(f"| {n} | {method} | {cell(entry, 'accuracy')} | {cell(entry, 'macro_f1')} | {recall} | "
                  f"{cell(entry, 'reference_fused')} | {cell(entry, 'reference_text')} | "
                  f"{cell(entry, 'seconds', 1.0)} |")


if __name__ == "__main__":
    main()
