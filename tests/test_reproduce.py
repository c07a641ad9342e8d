"""Comparing a re-exported bundle with the shipped one (jobtitles.export.reproduce)."""

import shutil

import pytest

from jobtitles.export.reproduce import MIN_TOP1_AGREEMENT, BundleAgreement, compare_bundles


def agreement(identical: bool, top1: float, diff: float) -> BundleAgreement:
    return BundleAgreement(n_texts=100, identical_model=identical, level_top1=top1, area_top1=1.0,
                           title_decision=1.0, max_abs_diff=diff)


@pytest.mark.parametrize("identical, top1, diff, passed", [
    (True, 1.0, 0.0, True),
    (True, 1.0, 1e-7, False),  # the same bytes must give the same numbers
    (False, MIN_TOP1_AGREEMENT, 0.08, True),
    (False, MIN_TOP1_AGREEMENT - 0.01, 0.08, False),
])
def test_same_bytes_must_answer_identically_other_bytes_within_the_agreement_bar(identical, top1, diff, passed):
    result = agreement(identical, top1, diff)
    assert result.passed is passed
    assert ("ok" if passed else "FAILED") in result.summary()


def test_a_copy_of_the_bundle_matches_it_exactly(bundle_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundle_dir, copy)
    result = compare_bundles(copy, bundle_dir, ["Senior Data Engineer", "店长", "Apply now", "Nurse"])
    assert (result.identical_model, result.max_abs_diff, result.passed) == (True, 0.0, True)
    assert (result.level_top1, result.area_top1, result.title_decision) == (1.0, 1.0, 1.0)

