"""Adapt the heads to a user's own kind of post from a labelled set (dozens to thousands of posts).

A correction (``core.heads.correction``) fixes the few pairs it is given and holds everything else in
place. An adaptation learns the user's posts: each head gets a linear read-out fitted on the user's
labels over its own features and its parent's logits (``core.heads.adaptation_readout``), with
reference pairs replayed so it keeps answering the reference's kind of post as before: for the heads
that learn from pictures, only as much as keeps the fused head close to its answers on the replayed
pairs, each measured by fits that did not replay it (the reference is pairs; the fused head answers them).

Honest figures come with it. Part of the user's labels is held out (one stratified hold-out, or
stratified k-fold for small sets) and never seen by the read-outs measured on it:

- accuracy on the user's held-out posts before (the parent) and after, and whether the adapted model is
  better than its parent on them: the per-post paired change with its 95 % interval,
- the learning curve: held-out accuracy against the number of labels used (25 / 50 / 100 % of the
  training part),
- whether more labels are still worth giving: the gain of the curve's last step, paired per post,
  with its 95 % interval,
- the reference set before and after (for the version that is saved, fitted on all the labels).

Rows without a picture teach the text head only: the fused and image heads learn from rows that carry
a picture, and stay exactly as they were when none does (a post without a picture is always answered
by the text head, so nothing else could use what it teaches).

    adapter = Adapter(parent, AdaptationConfig()).fit(posts, replay=replay, check=check)
    adapter.model_, adapter.evaluation_, adapter.vs_parent_, adapter.curve_, adapter.verdict_, adapter.reference_
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from core.features.sets import FeatureSet
from core.heads.adaptation_readout import Readout, fit_readout, head_inputs, head_logits, kept_logits, with_readouts
from core.heads.calibration import fit_temperature
from core.heads.model import LateFusionHeads
from core.heads.training import TrainingRefused
from core.io.labels import HEAD_NAMES, LABELS
from core.scoring.metrics import accuracy_interval

MIN_LABELS = 20        # fewer than this cannot be split honestly into learning and measuring
MIN_PER_LABEL = 2      # every label given must appear at least twice (once to learn, once to measure)
MIN_HEAD_ROWS = 10     # the image / fused heads adapt only with this many posts that carry a picture
MIN_REPLAY_FOR_MISSING_LABEL = 0.05  # replay weight that teaches a head a label the user gave none of
REPLAY_LADDER = (0.7, 2.0, 5.0, 10.0, 30.0)  # replay weights tried, in order, when none is set
MAX_REFERENCE_DROP = 0.03  # fused accuracy the reference may lose (the target the replay weight is chosen for)
# The replay weight is chosen on the replayed pairs by k-fold (each pair guarded by fits that did not replay
# it), aiming at half the allowance: on ~225 guard pairs the measured drop is itself off by ~1.3 points, so a
# guard held to the full 3 points let the held-out reference lose 3.6-4.0 on 2 of 6 MVSA draws; half held all 6.
GUARD_FOLDS = 3
GUARD_DROP = MAX_REFERENCE_DROP / 2


@dataclass
class AdaptationConfig:
    """Settings of an adaptation: read-out regularisation, how much reference is replayed, how the user's labels
    are split for measuring, the learning curve's fractions, the random state."""
    # L2 strength of the read-out (scikit-learn's C: smaller = stronger) and how much the parent's logits are
    # scaled up so the penalty barely touches them. Chosen on TweetEval val draws of 50-1,000 labels (never
    # its test file): C 1e-3 was best from 5e-4 to 2e-3 and for plain logistic regression alike; the scale
    # 3-30 changed little.
    C: float = 1e-3
    parent_scale: float = 10.0
    # The replayed reference pairs' total weight as a share of the user's labels, for the heads that learn
    # from posts with a picture (image, fused). None: the smallest of REPLAY_LADDER that keeps the fused
    # head within GUARD_DROP on the replayed pairs, by k-fold over them (the check pairs stay unseen).
    # MVSA train pairs labelled by their text_label (another rule on the same posts) needed 10; 0.7 lost
    # 10-17 points there (bench/adaptation.py, "pairs path").
    replay_weight: float | None = None
    # The text head's: None = replay_weight × the share of the user's posts that have a picture. The
    # reference is pairs, answered by the fused head; a set without pictures leaves that head as it was,
    # so its text head learns the user's posts unheld. On the TweetEval test sample, holding it to the
    # reference at 0.7 cost 3-7 points (docs/model-card.md, "Adapting to your own posts").
    text_replay_weight: float | None = None
    holdout: float = 0.25      # share of the user's labels held out to measure (sets of kfold_below or more)
    kfold_below: int = 150     # smaller sets are measured by stratified k-fold instead
    folds: int = 5
    curve: tuple[float, ...] = (0.25, 0.5, 1.0)
    random_state: int = 0

    def as_dict(self) -> dict:
        """The config as a plain dict (for cards)."""
        return {**asdict(self), "curve": list(self.curve)}


@dataclass
class PostSet:
    """A user's labelled posts as features. ``image`` rows of posts without a picture are zeros and
    ``has_image`` is False there."""
    text: np.ndarray
    image: np.ndarray
    has_image: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "PostSet":
        """The rows ``idx`` as a new PostSet."""
        return PostSet(self.text[idx], self.image[idx], self.has_image[idx], self.labels[idx])

    @classmethod
    def from_pairs(cls, pairs: FeatureSet) -> "PostSet":
        """Posts that all carry a picture."""
        return cls(pairs.text, pairs.image, np.ones(len(pairs), dtype=bool), pairs.labels)


def served_logits(model: LateFusionHeads, posts: PostSet) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(every head's logits, the logits that answer each post): the fused head's where the post has a
    picture, the text head's where it has none (as ``Predictor`` serves them)."""
    logits = head_logits(model, head_inputs(model, posts.text, posts.image))
    return logits, np.where(posts.has_image[:, None], logits["fused"], logits["text"])


def _accuracy(correct: np.ndarray) -> dict:
    n, k = len(correct), int(np.sum(correct))
    low, high = accuracy_interval(k, n) if n else (None, None)
    return {"n": n, "accuracy": k / n if n else None, "low": low, "high": high}


class Adapter:
    """Fits read-outs for the user's posts on top of ``parent``, a trained LateFusionHeads that is never
    changed (scikit-learn style: ``fit`` returns self; the results are the attributes ending in ``_``)."""

    def __init__(self, parent: LateFusionHeads, config: AdaptationConfig | None = None):
        self.parent = parent
        self.config = config or AdaptationConfig()

    # ----- fitting ------------------------------------------------------------------------------
    def _readouts(self, parent: LateFusionHeads, posts: PostSet, replay: dict | None,
                  heads: tuple[str, ...] = HEAD_NAMES) -> dict[str, Readout]:
        """Read-outs for each of ``heads`` that has enough of the user's rows; the others are left out
        (identity)."""
        inputs = head_inputs(parent, posts.text, posts.image)
        logits = kept_logits(parent, inputs)
        rows = {"text": np.ones(len(posts), dtype=bool), "image": posts.has_image, "fused": posts.has_image}
        readouts = {}
        for name in heads:
            mine = rows[name]
            if name != "text" and (mine.sum() < MIN_HEAD_ROWS or len(np.unique(posts.labels[mine])) < 2):
                continue
            kwargs = {}
            if replay is not None:
                weight = self._replay_weight(name, posts)
                if len(np.unique(posts.labels[mine])) < len(LABELS):
                    # A label the user never gave is learned from the replayed pairs alone.
                    weight = max(weight, MIN_REPLAY_FOR_MISSING_LABEL)
                kwargs = {"replay_z": replay["inputs"][name], "replay_parent": replay["logits"][name],
                          "replay_targets": replay["targets"][name], "replay_weight": weight}
            try:
                readouts[name] = fit_readout(inputs[name][mine], logits[name][mine], posts.labels[mine],
                                             C=self.config.C, parent_scale=self.config.parent_scale, **kwargs)
            except ValueError as error:
                raise TrainingRefused(f"the {name} head cannot adapt: {error}") from None
        return readouts

    def _replay_weight(self, head: str, posts: PostSet) -> float:
        if head != "text":
            return self.replay_weight_
        if self.config.text_replay_weight is not None:
            return self.config.text_replay_weight
        return self.replay_weight_ * float(posts.has_image.mean())

    def _replay_data(self, replay: FeatureSet | None) -> dict | None:
        """Each head's inputs on the replayed pairs, the kept members' logits (what a read-out is fitted
        from) and the parent's own logits (what the replayed pairs are held to)."""
        if replay is None or len(replay) == 0:
            return None
        inputs = head_inputs(self.parent, replay.text, replay.image)
        return {"inputs": inputs, "logits": kept_logits(self.parent, inputs),
                "targets": head_logits(self.parent, inputs)}

    def _choose_replay_weight(self, posts: PostSet, replay: FeatureSet | None, step) -> float:
        """The configured replay weight; else the smallest on REPLAY_LADDER whose fits on all the user's posts
        keep the fused head within GUARD_DROP of the parent on the replayed pairs, pooled over GUARD_FOLDS
        folds (each fold guarded by a fit that replays the others). Posts without pictures leave the fused
        head as it was: the first rung."""
        self.replay_choice_ = []
        if self.config.replay_weight is not None:
            return self.config.replay_weight
        if replay is None or len(replay) < GUARD_FOLDS or posts.has_image.sum() < MIN_HEAD_ROWS:
            return REPLAY_LADDER[0]
        order = np.random.default_rng(self.config.random_state).permutation(len(replay))
        folds = []
        for guard_rows in np.array_split(order, GUARD_FOLDS):
            guard = PostSet.from_pairs(replay.subset(np.sort(guard_rows)))
            fit_part = self._replay_data(replay.subset(np.sort(np.setdiff1d(order, guard_rows))))
            folds.append((guard, fit_part))
        labels = np.concatenate([guard.labels for guard, _ in folds])

        def fused_accuracy(model_of_fold) -> float:
            answers = [served_logits(model_of_fold(fit_part), guard)[0]["fused"].argmax(1) for guard, fit_part in folds]
            return float((np.concatenate(answers) == labels).mean())

        before = fused_accuracy(lambda fit_part: self.parent)
        for weight in REPLAY_LADDER:
            step(f"Choosing how much to replay the reference: weight {weight}", 0.0)
            self.replay_weight_ = weight
            # The heads are separate networks: only the fused read-out moves the fused answers.
            after = fused_accuracy(lambda fit_part: with_readouts(
                self.parent, self._readouts(self.parent, posts, fit_part, ("fused",))))
            self.replay_choice_.append({"weight": weight, "guard_n": len(labels), "fused_before": before,
                                        "fused_after": after})
            if before - after <= GUARD_DROP:
                break
        return self.replay_weight_

    def _splits(self, labels: np.ndarray) -> tuple[str, list[tuple[np.ndarray, np.ndarray]]]:
        from sklearn.model_selection import StratifiedKFold, train_test_split

        n = len(labels)
        if n < self.config.kfold_below:
            k = int(min(self.config.folds, np.bincount(labels)[np.unique(labels)].min()))
            folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=self.config.random_state)
            return f"{k}-fold", list(folds.split(np.zeros(n), labels))
        train, held = train_test_split(np.arange(n), test_size=self.config.holdout, stratify=labels,
                                       random_state=self.config.random_state)
        return "held-out", [(np.sort(train), np.sort(held))]

    def _subset(self, train: np.ndarray, labels: np.ndarray, fraction: float) -> np.ndarray:
        """A stratified ``fraction`` of ``train`` (all of it at 1.0)."""
        from sklearn.model_selection import train_test_split

        if fraction >= 1:
            return train
        size = max(int(round(fraction * len(train))), 2 * len(np.unique(labels[train])))
        try:
            part, _ = train_test_split(train, train_size=size, stratify=labels[train],
                                       random_state=self.config.random_state)
        except ValueError:  # a label too rare to stratify: a plain random draw
            part = np.random.default_rng(self.config.random_state).choice(train, size, replace=False)
        return np.sort(part)

    def fit(self, posts: PostSet, *, replay: FeatureSet | None = None, check: FeatureSet | None = None,
            on_step: Callable[[str, float], None] | None = None) -> "Adapter":
        """Measure the adaptation on held-out labels, then fit it on all of them. ``replay`` pairs are
        replayed into every fit, ``check`` pairs (held out from ``replay``) measure the reference before
        and after. ``on_step(message, share done)`` reports progress."""
        started = time.perf_counter()
        parent = self.parent
        step = on_step or (lambda message, done: None)
        labels = np.asarray(posts.labels)
        self._check_labels(labels)
        self.replay_weight_ = self._choose_replay_weight(posts, replay, step)
        replay_data = self._replay_data(replay)
        protocol, splits = self._splits(labels)
        fractions = tuple(sorted(self.config.curve))
        n_fits, done = len(splits) * len(fractions) + 1, 0
        _, before_served = served_logits(parent, posts)
        measured = {f: {"correct": [], "labels_used": []} for f in fractions}
        eval_rows, oof = [], {name: [] for name in HEAD_NAMES}
        for fold, (train, held) in enumerate(splits):
            eval_rows.append(held)
            for fraction in fractions:
                step(f"Measuring: fold {fold + 1} of {len(splits)}, {fraction:.0%} of its labels", done / n_fits)
                part = self._subset(train, labels, fraction)
                model = with_readouts(parent, self._readouts(parent, posts.subset(part), replay_data))
                logits, served = served_logits(model, posts.subset(held))
                measured[fraction]["correct"].append(served.argmax(1) == labels[held])
                measured[fraction]["labels_used"].append(len(part))
                if fraction == fractions[-1]:
                    for name in HEAD_NAMES:
                        oof[name].append(logits[name])
                done += 1
        held_all = np.concatenate(eval_rows)
        step("Fitting on all the labels", done / n_fits)
        readouts = self._readouts(parent, posts, replay_data)
        self.model_ = with_readouts(parent, readouts)
        self.adapted_heads_ = sorted(readouts)
        self.protocol_ = {"kind": protocol, "n_labels": int(len(labels)), "n_measured": int(len(held_all)),
                          "folds": len(splits), "with_image": int(posts.has_image.sum())}
        self._measure(labels, held_all, before_served, measured, fractions)
        self.temperatures_ = self._temperatures(posts, held_all, oof)
        self.reference_ = self._reference(parent, check)
        self.seconds_ = time.perf_counter() - started
        step("Done", 1.0)
        return self

    def _check_labels(self, labels: np.ndarray) -> None:
        if len(labels) < MIN_LABELS:
            raise TrainingRefused(f"an adaptation needs at least {MIN_LABELS} labelled posts to learn from some "
                                  f"and measure on others; got {len(labels)}")
        counts = np.bincount(labels, minlength=len(LABELS))
        given = counts[counts > 0]
        if len(given) < 2:
            raise TrainingRefused("every labelled post has the same label; an adaptation needs at least two "
                                  "different labels")
        if given.min() < MIN_PER_LABEL:
            rare = [LABELS[k] for k in np.flatnonzero((counts > 0) & (counts < MIN_PER_LABEL))]
            raise TrainingRefused(f"label(s) {', '.join(rare)} appear only once; give at least {MIN_PER_LABEL} "
                                  "posts of each label used (or drop them)")

    # ----- measuring ----------------------------------------------------------------------------
    def _measure(self, labels, held_all, before_served, measured, fractions) -> None:
        before = before_served[held_all].argmax(1) == labels[held_all]
        curve = []
        for fraction in fractions:
            correct = np.concatenate(measured[fraction]["correct"])
            curve.append({"fraction": fraction, "labels_used": float(np.mean(measured[fraction]["labels_used"])),
                          **_accuracy(correct), "_correct": correct})
        self.evaluation_ = {"before": _accuracy(before), "after": _accuracy(curve[-1]["_correct"])}
        self.vs_parent_ = versus_parent_verdict(before, curve[-1]["_correct"])
        self.verdict_ = more_labels_verdict(curve)
        self.curve_ = [{k: v for k, v in point.items() if k != "_correct"} for point in curve]

    def _temperatures(self, posts: PostSet, held_all: np.ndarray, oof: dict) -> dict[str, float]:
        """A temperature per adapted head from its held-out logits (the read-outs' logits are on another
        scale than the parent's): honest, since no read-out saw the posts it is measured on."""
        labels = posts.labels[held_all]
        with_image = posts.has_image[held_all]
        out = {}
        for name in self.adapted_heads_:
            logits = np.concatenate(oof[name])
            rows = np.ones(len(labels), dtype=bool) if name == "text" else with_image
            if rows.sum() >= MIN_HEAD_ROWS:
                out[name] = round(fit_temperature(logits[rows], labels[rows]), 4)
        return out

    def _reference(self, parent: LateFusionHeads, check: FeatureSet | None) -> dict:
        if check is None or len(check) == 0:
            return {}
        posts = PostSet.from_pairs(check)
        result = {"n": len(check)}
        for key, model in (("before", parent), ("after", self.model_)):
            logits, _ = served_logits(model, posts)
            result[key] = {name: float((logits[name].argmax(1) == check.labels).mean()) for name in HEAD_NAMES}
        return result


def replay_choice_text(weight: float, tried: list[dict]) -> str:
    """How the replay weight was chosen, in a sentence ('' when it was set, not chosen)."""
    if not tried:
        return ""
    last = tried[-1]
    drop = (last["fused_before"] - last["fused_after"]) * 100
    held = drop <= GUARD_DROP * 100 + 1e-9
    how = "the smallest that kept" if held else "the largest tried; even it did not keep"
    return (f"The reference was replayed at weight {weight:g}, {how} its fused accuracy within "
            f"{GUARD_DROP * 100:g} points on the {last['guard_n']} replayed pairs (each measured by a fit that did "
            f"not replay it; {drop:+.1f} points there), so that it stays within {MAX_REFERENCE_DROP * 100:g} on "
            "pairs never replayed.")


def paired_change(before: np.ndarray, after: np.ndarray) -> tuple[float, float, float]:
    """The mean per-post change in correctness from ``before`` to ``after`` (booleans for the same posts)
    and its 95 % interval (normal approximation of the paired differences)."""
    diff = after.astype(float) - before.astype(float)
    gain = float(diff.mean())
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return gain, gain - 1.96 * se, gain + 1.96 * se


def versus_parent_verdict(before: np.ndarray, after: np.ndarray) -> dict:
    """Whether the adapted model answers the user's held-out posts better than the version it adapts:
    ``before`` / ``after`` say per post whether the parent / the adaptation was right."""
    if np.array_equal(before, after):
        return {"answer": "same", "gain": 0.0, "low": 0.0, "high": 0.0,
                "message": f"The same as the version it adapts on your {len(before)} held-out posts: right and wrong "
                           "on exactly the same ones. Saving it would change nothing on posts like these."}
    gain, low, high = paired_change(before, after)
    figures = (f"{gain * 100:+.1f} points on {len(before)} held-out posts (95% interval {low * 100:+.1f} to "
               f"{high * 100:+.1f})")
    if low > 0:
        answer, message = "better", f"Better on your posts than the version it adapts: {figures}."
    elif high < 0:
        answer = "worse"
        message = (f"Worse on your posts than the version it adapts: {figures}. Saving it would lose accuracy "
                   "on posts like these; that version already reads them better than these labels teach.")
    else:
        answer = "unclear"
        message = (f"Not clearly better or worse than the version it adapts: {figures}, within what chance moves. "
                   "Saving it is unlikely to change much on posts like these.")
    return {"answer": answer, "gain": gain, "low": low, "high": high, "message": message}


def more_labels_verdict(curve: list[dict]) -> dict:
    """Whether more labels are still worth giving, from the curve's last step: the per-post paired
    change in correctness between the last two points, its mean and 95 % interval, and the same per
    100 labels. ``curve`` points carry ``_correct`` (per measured post) and ``labels_used``."""
    if len(curve) < 2:
        return {"answer": "unknown", "message": "the learning curve has a single point"}
    last, previous = curve[-1], curve[-2]
    gain, low, high = paired_change(previous["_correct"], last["_correct"])
    added = max(last["labels_used"] - previous["labels_used"], 1.0)
    per_100 = gain / added * 100
    step = f"from {previous['labels_used']:.0f} to {last['labels_used']:.0f} labels"
    figures = f"{gain * 100:+.1f} points (95% interval {low * 100:+.1f} to {high * 100:+.1f})"
    if low > 0:
        answer = "yes"
        message = (f"Yes: {step} the held-out accuracy moved {figures}, about {per_100 * 100:+.1f} points per 100 "
                   "labels. More labels of this kind should still help.")
    elif high < 0.01:
        answer = "little"
        message = (f"Little: {step} the held-out accuracy moved {figures}. More labels of the same kind are "
                   "unlikely to add much; labels of posts it gets wrong may still help.")
    else:
        answer = "unclear"
        message = (f"Unclear: {step} the held-out accuracy moved {figures}; the interval is too wide to "
                   "tell. More labels would also make this answer firmer.")
    return {"answer": answer, "gain": gain, "low": low, "high": high, "per_100_labels": per_100,
            "message": message}
