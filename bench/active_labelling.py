"""Label where it pays: does correcting the head on the pairs it is least sure of beat correcting it on
random pairs of the same number? Measured on MVSA-Single dev (test.csv is never read).

    python bench/active_labelling.py [--budget 20] [--splits 3] [--random 5]

For each split, MVSA dev is cut at random into a pool (half) and an evaluation half. From the pool,
``budget`` pairs are chosen by ``core.scoring.uncertainty.labelling_priority`` (fused entropy + text/image
disagreement) and, separately, ``random`` times at random; each choice is labelled with its true labels
and the shipped head is corrected on it exactly as the Correct page does (``correct_heads``, MVSA train
replayed). Prints the fused accuracy on the evaluation half before and after each correction, then one
JSON line with every figure and the machine block.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=20, help="pairs labelled per correction")
    parser.add_argument("--splits", type=int, default=3, help="random pool / evaluation cuts of dev")
    parser.add_argument("--random", type=int, default=5, help="random choices per split")
    args = parser.parse_args(argv)

    from core import config
    from core.features.store import FeatureStore
    from core.heads.calibration import apply_temperature
    from core.heads.correction import CorrectionConfig, correct_heads
    from core.heads.recipe import load_labelled_set
    from core.heads.training import predict_logits
    from core.machine import machine_block
    from core.registry import read_version_folder
    from core.scoring.predict import Predictor
    from core.scoring.uncertainty import labelling_priority, most_informative

    data = config.mvsa_dir()
    if not (data / "dev.csv").exists():
        raise SystemExit(f"MVSA-Single not found in {data} (set MMSA_MVSA_DIR)")
    tensors, card = read_version_folder(config.DEFAULT_HEAD_DIR)
    store = FeatureStore(config.feature_store_path())
    predictor = Predictor.from_card(tensors, card, store)
    load = lambda name: load_labelled_set(data / name, data / "images", predictor.text_encoder,  # noqa: E731
                                          predictor.image_encoder, store).features
    dev, train = load("dev.csv"), load("train.csv")
    base = predictor.heads

    def fused_accuracy(model, subset) -> float:
        return float((predict_logits(model, subset)["fused"].argmax(1) == subset.labels).mean())

    def corrected_accuracy(chosen, pool, evaluation) -> float:
        result = correct_heads(base, pool.subset(chosen), train, CorrectionConfig())
        return fused_accuracy(result.model, evaluation)

    splits = []
    for split in range(args.splits):
        order = np.random.default_rng(100 + split).permutation(len(dev))
        pool, evaluation = dev.subset(order[:len(dev) // 2]), dev.subset(order[len(dev) // 2:])
        logits = predict_logits(base, pool)
        probs = {head: apply_temperature(logits[head], predictor.temperatures[head]) for head in logits}
        chosen = most_informative(labelling_priority(probs["fused"], probs["text"], probs["image"]), args.budget)
        row = {"split": split, "pool": len(pool), "evaluation": len(evaluation),
               "before": fused_accuracy(base, evaluation),
               "chosen_wrong_before": int((logits["fused"][chosen].argmax(1) != pool.labels[chosen]).sum()),
               "uncertainty": corrected_accuracy(chosen, pool, evaluation), "random": [], "random_wrong_before": []}
        for k in range(args.random):
            picks = np.random.default_rng(1000 * split + k).choice(len(pool), args.budget, replace=False)
            row["random_wrong_before"].append(int((logits["fused"][picks].argmax(1) != pool.labels[picks]).sum()))
            row["random"].append(corrected_accuracy(picks, pool, evaluation))
        splits.append(row)
        print(f"split {split}: evaluation {row['before']:.2%} before; uncertainty-chosen {row['uncertainty']:.2%} "
              f"({row['chosen_wrong_before']}/{args.budget} were wrong); random {np.mean(row['random']):.2%} "
              f"± {np.std(row['random'], ddof=1) if args.random > 1 else 0:.2%} "
              f"({np.mean(row['random_wrong_before']):.1f}/{args.budget} wrong)", flush=True)
    gain = lambda key: [(np.mean(r[key]) - r["before"]) * 100 for r in splits]  # noqa: E731
    result = {"budget": args.budget, "splits": splits,
              "gain_points": {"uncertainty": gain("uncertainty"), "random": gain("random")},
              "mean_gain_points": {"uncertainty": float(np.mean(gain("uncertainty"))),
                                   "random": float(np.mean(gain("random")))},
              "machine": machine_block()}
    print(f"mean change of fused accuracy on the evaluation halves: uncertainty-chosen "
          f"{result['mean_gain_points']['uncertainty']:+.2f} points, random {result['mean_gain_points']['random']:+.2f}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
