"""The labelled reference set a correction or an adaptation is measured against (and half of it replayed),
so a change that breaks the model shows: MVSA-Single ``dev.csv`` when it is on this machine, else the
project's example pairs (``assets/examples``). The app, the CLI and the benchmarks share it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import config
from core.features.sets import FeatureSet


@dataclass
class ReferenceSet:
    name: str               # shown on the page, e.g. "MVSA-Single dev (450 pairs)"
    features: FeatureSet
    skipped: int = 0

    def split(self, seed: int = 0) -> tuple[FeatureSet, FeatureSet]:
        """(replay, check): half is replayed during a correction so the head keeps what it knew, the
        other half is held out to measure the correction. Checking on the replayed half would hide
        damage, since the correction trains on it."""
        order = np.random.default_rng(seed).permutation(len(self.features))
        half = len(order) // 2
        return self.features.subset(np.sort(order[:half])), self.features.subset(np.sort(order[half:]))


def reference_source() -> tuple[str, Path, Path]:
    """(name, csv, images folder) of the reference set this machine has."""
    mvsa = config.mvsa_dir()
    if (mvsa / "dev.csv").is_file() and (mvsa / "images").is_dir():
        return "MVSA-Single dev", mvsa / "dev.csv", mvsa / "images"
    return "project example pairs", config.EXAMPLES_DIR / "examples.csv", config.EXAMPLES_DIR / "images"


def load_reference_set(text_encoder, image_encoder, store) -> ReferenceSet:
    """Encode the reference set through the feature store (the first MVSA run costs ~20 s, then none)."""
    from core.heads.recipe import load_labelled_set

    name, csv_path, images = reference_source()
    labelled = load_labelled_set(csv_path, images, text_encoder, image_encoder, store)
    return ReferenceSet(f"{name} ({len(labelled.features)} pairs)", labelled.features, len(labelled.skipped))
