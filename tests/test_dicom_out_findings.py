"""The draft findings paragraph: sides, volumes and effusion exactly as result.json has them, worded
only as far as the numbers support, each reason and each quality warning said once."""

from __future__ import annotations

import pytest

from workers.analysis.result import (
    Algorithm,
    AnalysisResult,
    Quality,
    RegionMeasurement,
    SeriesReport,
    SeriesUsed,
    SideResult,
)
from workers.dicom_out.findings import (
    DRAFT_LABEL,
    LARGE_EFFUSION_ML,
    draft_findings,
    fmt_ml,
    fmt_pct,
    supported_pattern,
)

STIR_UID = "1.2.3.4.5"


def _side(side: str, *, present: bool, volume: float = 0.0, head: float = 0.0, neck: float = 0.0,
          itr: float = 0.0, pattern: str = "none", effusion: bool = False, effusion_ml: float = 0.0,
          band: bool | None = None, head_share: float = 1.0) -> SideResult:
    regions = {"head": RegionMeasurement(region_volume_ml=50.0, oedema_volume_ml=volume * head_share,
                                         involvement_pct=head)} if present else {}
    return SideResult(
        side=side, localized=True, present=present, oedema_volume_ml=volume, head_involvement_pct=head,
        neck_involvement_pct=neck, intertrochanteric_involvement_pct=itr, regions=regions,
        mean_signal_ratio=2.71 if present else None, p95_signal_ratio=3.9 if present else None,
        mean_t1_ratio=0.62 if present else None, pattern=pattern, subchondral_low_signal_band=band,
        effusion=effusion, effusion_volume_ml=effusion_ml, effusion_thickness_mm=6.2 if effusion else None)


def _result(right: SideResult, left: SideResult, **kw: object) -> AnalysisResult:
    return AnalysisResult(
        status="analyzed", series_used=SeriesUsed(fluid_sensitive=STIR_UID),
        series=[SeriesReport(series_instance_uid=STIR_UID, kind="stir", plane="coronal")],
        sides={"right": right, "left": left}, algorithm=Algorithm(version="0.1.0"), **kw)


def _roundtrip(result: AnalysisResult) -> AnalysisResult:
    return AnalysisResult.model_validate_json(result.model_dump_json())  # as read from result.json


def test_normal_hips_are_stated_plainly() -> None:
    text = draft_findings(_roundtrip(_result(_side("right", present=False), _side("left", present=False))))
    assert text.startswith(DRAFT_LABEL)
    assert "Right hip: no bone marrow oedema, no joint effusion." in text
    assert "Left hip: no bone marrow oedema, no joint effusion." in text
    assert " mL" not in text and "Differential" not in text and "Caution" not in text


def test_one_draft_and_correlate_clinically_line() -> None:
    left = _side("left", present=True, volume=41.96, head=78.2, neck=55.4, pattern="diffuse")
    text = draft_findings(_result(_side("right", present=False), left))
    assert text.count("correlate clinically") == 1 and text.count("MACHINE-GENERATED DRAFT") == 1
    assert text.isascii()


def test_unilateral_diffuse_case() -> None:
    left = _side("left", present=True, volume=41.96, head=78.2, neck=55.4, pattern="diffuse", effusion=True,
                 effusion_ml=6.25)
    text = draft_findings(_roundtrip(_result(_side("right", present=False), left)))
    assert (f"Left hip: diffuse bone marrow oedema of the femoral head and neck, {fmt_ml(41.96)} "
            f"({fmt_pct(78.2)} of the head, {fmt_pct(55.4)} of the neck)") in text
    assert "STIR signal 2.71 x reference marrow" in text and "low T1 signal (0.62 x reference marrow)" in text
    assert f"Left hip joint effusion ({fmt_ml(6.25)}, fluid layer up to 6 mm)." in text
    assert "Right hip: no bone marrow oedema, no joint effusion." in text
    assert text.index("Left hip") < text.index("Right hip")  # abnormal side first
    assert "Differential of the bone marrow oedema: transient osteoporosis" in text
    assert "septic arthritis" not in text  # the effusion is not large


@pytest.mark.parametrize(("head", "neck", "word"), [(0.0, 30.0, False), (78.2, 0.4, True), (30.0, 12.0, True),
                                                    (25.0, 4.0, False)])
def test_pattern_word_only_when_the_numbers_support_it(head: float, neck: float, word: bool) -> None:
    left = _side("left", present=True, volume=20.0, head=head, neck=neck, pattern="diffuse")
    result = _result(_side("right", present=False), left)
    text = draft_findings(result)
    assert ("diffuse bone marrow oedema" in text) == word
    assert (supported_pattern(left, result) == "diffuse") == word


def test_regional_pattern_is_coded_but_the_text_names_the_region() -> None:
    left = _side("left", present=True, volume=3.1, head=0.0, neck=12.0, pattern="regional")
    result = _result(_side("right", present=False), left)
    assert supported_pattern(left, result) == "regional"
    text = draft_findings(result)
    assert "Left hip: bone marrow oedema of the femoral neck, 3.1 mL (12 % of the neck)" in text
    assert "regional" not in text


def test_regions_below_five_percent_are_not_named() -> None:
    left = _side("left", present=True, volume=30.0, head=60.0, neck=0.4, itr=1.0, pattern="diffuse")
    text = draft_findings(_result(_side("right", present=False), left))
    assert "oedema of the femoral head, 30.0 mL (60 % of the head)" in text
    assert "neck" not in text and "intertrochanteric" not in text


def test_a_small_lesion_is_placed_in_the_region_that_holds_it() -> None:
    right = _side("right", present=True, volume=1.3, head=2.1, pattern="focal")
    text = draft_findings(_result(right, _side("left", present=False)))
    assert "Right hip: focal subchondral bone marrow oedema of the femoral head, 1.3 mL (2 % of the head)" in text


def test_focal_subchondral_pattern_gets_the_avn_caution() -> None:
    right = _side("right", present=True, volume=2.4, head=9.6, pattern="focal", band=True)
    text = draft_findings(_roundtrip(_result(right, _side("left", present=False))))
    assert f"Right hip: focal subchondral bone marrow oedema of the femoral head, {fmt_ml(2.4)} ({fmt_pct(9.6)} of " \
        "the head)" in text
    assert "Subchondral low-signal band in the right femoral head." in text
    assert "avascular necrosis and a subchondral insufficiency fracture" in text
    assert "Diffuse" not in text and "diffuse" not in text
    # the word needs the numbers: oedema mostly outside the head is not "focal subchondral"
    spread = _side("right", present=True, volume=2.4, head=9.6, pattern="focal", head_share=0.3)
    assert "focal" not in draft_findings(_result(spread, _side("left", present=False)))


def test_large_effusion_puts_septic_arthritis_in_the_differential() -> None:
    left = _side("left", present=True, volume=40.0, head=70.0, neck=50.0, pattern="diffuse", effusion=True,
                 effusion_ml=LARGE_EFFUSION_ML + 2.0)
    text = draft_findings(_result(_side("right", present=False), left))
    assert f"Large left hip joint effusion ({fmt_ml(LARGE_EFFUSION_ML + 2.0)}" in text
    assert "and septic arthritis given the large effusion." in text
    alone = draft_findings(_result(_side("right", present=False, effusion=True, effusion_ml=15.0),
                                   _side("left", present=False)))
    assert "Large right hip joint effusion: septic arthritis is in the differential." in alone


def test_unlocalised_side_gives_its_reason_once() -> None:
    reason = "femoral head not found (implausible sphere fit)"
    left = SideResult(side="left", localized=False, reason=reason)
    result = _result(_side("right", present=False), left,
                     quality=Quality(warnings=[f"left: {reason}"], confidence="reduced"))
    text = draft_findings(_roundtrip(result))
    assert f"Left hip: not assessed ({reason})." in text
    assert text.count(reason) == 1


def test_fat_suppression_failure_once_in_plain_words() -> None:
    reason = ("fat suppression failed around the right hip (fat 1.25 x muscle on the fluid-sensitive series); "
              "withheld without a T1")
    right = SideResult(side="right", localized=True, reason=reason)
    left = _side("left", present=False).model_copy(update={"fat_suppression_ratio": 1.3})
    warnings = [reason.split(";")[0] + "; result withheld (no T1 to tell oedema from unsuppressed fat)",
                "fat suppression failed around the left hip (fat 1.30 x muscle on the fluid-sensitive series); "
                "oedema only where the T1 is dark, confidence reduced",
                "motion ghosts faint"]
    result = _result(right, left, quality=Quality(warnings=warnings, fat_suppression_ok=False, confidence="reduced"))
    text = draft_findings(result)
    assert text.count("fat suppression failed") == 1  # the right hip's reason; no repeat
    assert "Right hip: bone marrow oedema not assessed (fat suppression failed around the right hip" in text
    assert "motion ghosts faint" in text and "Confidence in these measurements is reduced." in text
    both_measured = result.model_copy(update={"sides": {"right": _side("right", present=False).model_copy(
        update={"fat_suppression_ratio": 1.25}), "left": left}})
    text = draft_findings(both_measured)
    assert text.count("fat suppression failed on the STIR series") == 1
    assert "(fat signal: right hip 1.25 x muscle and left hip 1.30 x muscle)" in text


@pytest.mark.parametrize(("status", "phrase"), [("not_applicable", "not performed"), ("failed", "failed")])
def test_not_analysed_says_why_once(status: str, phrase: str) -> None:
    result = AnalysisResult(status=status, reason="only a T1 series in the study",
                            algorithm=Algorithm(version="0.1.0"))
    text = draft_findings(result)
    assert text.startswith(DRAFT_LABEL)
    assert f"Bone marrow oedema analysis {phrase}: only a T1 series in the study." in text
    assert text.count("only a T1 series") == 1 and "mL" not in text


def test_sub_threshold_volume_is_not_called_oedema() -> None:
    right = _side("right", present=False, volume=0.97)
    left = _side("left", present=True, volume=30.0, head=60.0, neck=0.3, pattern="diffuse")
    text = draft_findings(_roundtrip(_result(right, left)))
    assert "Right hip: no bone marrow oedema" in text and "0.97" not in text and "1.0 mL" not in text
    assert "oedema of the right" not in text
