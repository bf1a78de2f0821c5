"""Pure comparison: status per side from the two analyses, thresholds, sides that cannot be compared."""

from __future__ import annotations

import pytest

from workers.analysis.result import Algorithm, AnalysisResult, Side, SideResult
from workers.dicom_out.findings import fmt_ml
from workers.followup.compare import (
    CHANGE_MIN_PCT,
    RESOLVED_MAX_FRACTION,
    RESOLVED_MAX_ML,
    STABLE_MAX_ML,
    ComparisonError,
    compare_results,
    prior_ref_of,
    side_status,
)
from workers.followup.text import comparison_sentence


def _side(side: Side, volume: float | None, *, localized: bool = True, effusion_ml: float = 0.0) -> SideResult:
    """A side as the analysis reports it: present when the volume reaches 1 mL."""
    if not localized:
        return SideResult(side=side, localized=False, reason="head not found")
    return SideResult(side=side, localized=True, present=volume is not None and volume >= 1.0,
                      oedema_volume_ml=volume, head_involvement_pct=10.0 if volume else 0.0,
                      neck_involvement_pct=5.0 if volume else 0.0, effusion=effusion_ml >= 1.0,
                      effusion_volume_ml=effusion_ml)


def _result(uid: str, date: str, right: SideResult, left: SideResult, time: str = "090000") -> AnalysisResult:
    return AnalysisResult(status="analyzed", study_instance_uid=uid, study_date=date, study_time=time,
                          accession_number=f"ACC-{uid}", sides={"right": right, "left": left},
                          algorithm=Algorithm(version="test"))


@pytest.mark.parametrize(("then", "now", "present_now", "expected"), [
    (42.0, 0.0, False, "resolved"),
    (42.0, 0.9, True, "resolved"),            # below RESOLVED_MAX_ML
    (42.0, 4.0, True, "resolved"),            # below 10 % of the prior
    (42.0, 20.0, True, "improved"),           # -52 %
    (42.0, 31.4, True, "improved"),           # -25.2 %, -10.6 mL
    (42.0, 32.0, True, "stable"),             # -23.8 %
    (42.0, 52.0, True, "stable"),             # +23.8 %
    (42.0, 53.0, True, "worse"),              # +26 %
    (4.0, 5.9, True, "stable"),               # +47 % but only +1.9 mL
    (4.0, 6.5, True, "worse"),                # +62 %, +2.5 mL
    (6.0, 3.5, True, "improved"),             # -42 %, -2.5 mL
])
def test_status_thresholds(then: float, now: float, present_now: bool, expected: str) -> None:
    assert side_status(True, present_now, then, now) == expected


def test_no_oedema_and_new() -> None:
    assert side_status(False, False, 0.0, 0.4) == "no_oedema"
    assert side_status(False, True, 0.3, 12.0) == "new"


def test_thresholds_are_the_documented_ones() -> None:
    assert (RESOLVED_MAX_ML, RESOLVED_MAX_FRACTION, CHANGE_MIN_PCT, STABLE_MAX_ML) == (1.0, 0.10, 25.0, 2.0)


def test_compare_results_values_and_sentence() -> None:
    prior = _result("1.2.3", "20260302", _side("right", 0.0), _side("left", 42.1, effusion_ml=3.0))
    current = _result("1.2.4", "20261005", _side("right", 0.0), _side("left", 0.0))
    comparison = compare_results(current, prior, prior_ref_of(prior, job_id="j1"))
    left, right = comparison.sides["left"], comparison.sides["right"]
    assert (left.status, left.volume_ml_prior, left.volume_ml_current, left.change_ml, left.change_pct) == (
        "resolved", 42.1, 0.0, -42.1, -100.0)
    assert (left.effusion_prior, left.effusion_current, left.effusion_ml_prior) == (True, False, 3.0)
    assert (left.head_pct_prior, left.head_pct_current) == (10.0, 0.0)
    assert right.status == "no_oedema" and right.change_pct is None
    assert comparison.prior.accession_number == "ACC-1.2.3" and comparison.prior.job_id == "j1"
    assert comparison.thresholds["change_min_pct"] == CHANGE_MIN_PCT
    sentence = comparison_sentence(comparison, fmt_ml)
    assert sentence == ("Compared with the prior MRI of 2026-03-02 (accession ACC-1.2.3): left hip bone marrow "
                        "oedema has resolved (42.1 mL -> 0.0 mL); no right hip bone marrow oedema at either time.")


def test_improved_percent_change() -> None:
    prior = _result("1.2.3", "20260302", _side("right", 0.0), _side("left", 40.0))
    current = _result("1.2.4", "20260608", _side("right", 0.0), _side("left", 25.0))
    left = compare_results(current, prior, prior_ref_of(prior)).sides["left"]
    assert left.status == "improved"
    assert left.change_pct == pytest.approx(-37.5)
    assert "(40.0 mL -> 25.0 mL, -38 %)" in comparison_sentence(compare_results(current, prior, prior_ref_of(prior)),
                                                                 fmt_ml)


@pytest.mark.parametrize("when", ["prior", "current"])
def test_unlocalised_side_is_not_compared(when: str) -> None:
    missing = _side("left", None, localized=False)
    left_prior, left_now = (missing, _side("left", 5.0)) if when == "prior" else (_side("left", 5.0), missing)
    prior = _result("1.2.3", "20260302", _side("right", 0.0), left_prior)
    current = _result("1.2.4", "20261005", _side("right", 0.0), left_now)
    comparison = compare_results(current, prior, prior_ref_of(prior))
    left = comparison.sides["left"]
    assert left.status == "not_compared"
    assert f"not localised in the {when} study" in left.reason
    assert left.volume_ml_prior is None and left.volume_ml_current is None and left.change_pct is None
    assert comparison.sides["right"].status == "no_oedema"
    assert "left hip not compared (the left hip was not localised" in comparison_sentence(comparison, fmt_ml)


def test_withheld_side_is_not_compared() -> None:
    withheld = SideResult(side="left", localized=True, present=None, reason="fat suppression failed")
    prior = _result("1.2.3", "20260302", _side("right", 0.0), _side("left", 30.0))
    current = _result("1.2.4", "20261005", _side("right", 0.0), withheld)
    assert compare_results(current, prior, prior_ref_of(prior)).sides["left"].status == "not_compared"


def test_refuses_same_study_later_prior_and_unanalysed() -> None:
    a = _result("1.2.3", "20260302", _side("right", 0.0), _side("left", 30.0))
    later = _result("1.2.9", "20270101", _side("right", 0.0), _side("left", 30.0))
    same_day_later = _result("1.2.8", "20260302", _side("right", 0.0), _side("left", 30.0), time="120000")
    with pytest.raises(ComparisonError, match="same study"):
        compare_results(a, a, prior_ref_of(a))
    with pytest.raises(ComparisonError, match="not earlier"):
        compare_results(a, later, prior_ref_of(later))
    with pytest.raises(ComparisonError, match="not earlier"):
        compare_results(a, same_day_later, prior_ref_of(same_day_later))
    assert compare_results(same_day_later, a, prior_ref_of(a)).sides["left"].status == "stable"
    failed = AnalysisResult(status="failed", reason="x", algorithm=Algorithm(version="test"))
    with pytest.raises(ComparisonError, match="both studies must be analysed"):
        compare_results(a, failed, prior_ref_of(a))
