"""Which unlabelled pairs are worth a label: unsure answers and text/picture disagreements first."""
import numpy as np

from core.scoring.uncertainty import DISAGREEMENT_WEIGHT, labelling_priority, most_informative


def test_an_unsure_answer_comes_before_a_sure_one():
    fused = np.array([[0.98, 0.01, 0.01], [0.34, 0.33, 0.33], [0.6, 0.3, 0.1]])
    priority = labelling_priority(fused)
    assert list(most_informative(priority, 3)) == [1, 2, 0]
    assert priority[1] > priority[2] > priority[0] >= 0
    assert np.isclose(priority[1], -(fused[1] * np.log(fused[1])).sum())


def test_text_and_picture_that_disagree_move_a_pair_up_and_a_missing_branch_does_not():
    fused = np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.7, 0.2, 0.1]])
    text = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [np.nan] * 3])
    image = np.array([[0.9, 0.05, 0.05], [0.05, 0.05, 0.9], [0.05, 0.05, 0.9]])
    priority = labelling_priority(fused, text, image)
    assert np.isclose(priority[1] - priority[0], DISAGREEMENT_WEIGHT)
    assert np.isclose(priority[2], priority[0])  # no text branch: nothing to disagree with
    assert list(most_informative(priority, 1)) == [1]
    assert len(most_informative(priority, 0)) == 0
