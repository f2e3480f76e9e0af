"""The modality-conflict rule on hand-built text / image probabilities."""
import numpy as np
import pytest

from core.scoring.conflict import conflict_flags, disagree, evaluate_conflict_flag

NEG, NEU, POS = [0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]
UNSURE_POS = [0.3, 0.3, 0.4]  # argmax positive, but only 40 % sure


def test_confident_opposite_polarities_are_a_conflict_in_both_directions():
    text = np.array([NEG, POS])
    image = np.array([POS, NEG])
    assert conflict_flags(text, image).tolist() == [True, True]


def test_agreement_and_neutral_are_never_a_conflict():
    text = np.array([POS, NEG, NEU, POS])
    image = np.array([POS, NEG, POS, NEU])
    assert conflict_flags(text, image).tolist() == [False] * 4
    # ...but the softer signal does notice the neutral-vs-polar pairs.
    assert disagree(text, image).tolist() == [False, False, True, True]


def test_an_unsure_head_does_not_raise_the_flag_until_the_threshold_allows_it():
    text, image = np.array([NEG]), np.array([UNSURE_POS])
    assert conflict_flags(text, image).tolist() == [False]
    assert conflict_flags(text, image, threshold=0.4).tolist() == [True]


def test_a_single_pair_can_be_passed_as_flat_vectors():
    assert conflict_flags(NEG, POS).tolist() == [True]


def test_evaluation_against_real_conflicts():
    flags = np.array([True, True, False, False, False])
    real = np.array([True, False, True, False, False])
    fused_correct = np.array([False, True, True, True, False])

    result = evaluate_conflict_flag(flags, real, fused_correct)
    assert result["n_flagged"] == 2 and result["n_real"] == 2
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(0.5)
    assert result["f1"] == pytest.approx(0.5)
    assert result["fused_accuracy_flagged"] == pytest.approx(0.5)
    assert result["fused_accuracy_unflagged"] == pytest.approx(2 / 3)


def test_empty_groups_give_none_instead_of_a_misleading_zero():
    result = evaluate_conflict_flag([False, False], [False, False], [True, False])
    assert result["precision"] is None and result["recall"] is None and result["f1"] is None
    assert result["fused_accuracy_flagged"] is None
    assert result["fused_accuracy_unflagged"] == pytest.approx(0.5)
