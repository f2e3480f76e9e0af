"""Scoring with a head: one pair (`predict`), a table in chunks (`batch`), the modality-conflict rule
(`conflict`), accuracy / F1 / calibration metrics (`metrics`) and explanations (`explain`). Import
from the modules; this package re-exports nothing."""
