"""The draft findings paragraph: right side(s), volumes and effusion exactly as result.json has them."""

from __future__ import annotations

import pytest

from workers.analysis.result import (
    Algorithm,
    AnalysisResult,
    Quality,
    SeriesReport,
    SeriesUsed,
    SideResult,
)
from workers.dicom_out.findings import DRAFT_LABEL, draft_findings, fmt_ml, fmt_pct

STIR_UID = "1.2.3.4.5"


def _side(side: str, *, present: bool, volume: float = 0.0, head: float = 0.0, neck: float = 0.0,
          pattern: str = "none", effusion: bool = False, effusion_ml: float = 0.0,
          band: bool = False) -> SideResult:
    return SideResult(
        side=side, localized=True, present=present, oedema_volume_ml=volume, head_involvement_pct=head,
        neck_involvement_pct=neck, intertrochanteric_involvement_pct=0.0,
        mean_signal_ratio=2.71 if present else None, p95_signal_ratio=3.9 if present else None,
        mean_t1_ratio=0.62 if present else None, pattern=pattern, subchondral_low_signal_band=band,
        effusion=effusion, effusion_volume_ml=effusion_ml)


def _result(right: SideResult, left: SideResult, **kw: object) -> AnalysisResult:
    return AnalysisResult(
        status="analyzed", series_used=SeriesUsed(fluid_sensitive=STIR_UID),
        series=[SeriesReport(series_instance_uid=STIR_UID, kind="stir", plane="coronal")],
        sides={"right": right, "left": left}, algorithm=Algorithm(version="0.1.0"), **kw)


def _roundtrip(result: AnalysisResult) -> AnalysisResult:
    return AnalysisResult.model_validate_json(result.model_dump_json())  # as read from result.json


def test_normal_case_names_both_hips_normal() -> None:
    result = _roundtrip(_result(_side("right", present=False), _side("left", present=False)))
    text = draft_findings(result)
    assert text.startswith(DRAFT_LABEL)
    assert "Right hip: normal marrow signal, no bone marrow oedema detected." in text
    assert "Left hip: normal marrow signal, no bone marrow oedema detected." in text
    assert "No right hip joint effusion." in text and "No left hip joint effusion." in text
    assert " mL" not in text  # no volume was measured, none is printed


def test_unilateral_left_case() -> None:
    left = _side("left", present=True, volume=41.96, head=78.2, neck=55.4, pattern="diffuse", effusion=True,
                 effusion_ml=6.25)
    result = _roundtrip(_result(_side("right", present=False), left))
    text = draft_findings(result)
    assert (f"Diffuse bone marrow oedema of the left femoral head and neck ({fmt_ml(41.96)}; "
            f"{fmt_pct(78.2)} of the head; {fmt_pct(55.4)} of the neck)") in text
    assert "high signal on STIR" in text and "low signal on T1 (ratio 0.62)" in text
    assert f"Left hip joint effusion ({fmt_ml(6.25)})." in text
    assert "Right hip: normal marrow signal" in text and "No right hip joint effusion." in text
    assert "oedema of the right" not in text
    assert text.index("left femoral") < text.index("Right hip")  # abnormal side first


def test_bilateral_case_names_both_sides_with_their_volumes() -> None:
    right = _side("right", present=True, volume=12.3, head=30.0, neck=5.0, pattern="diffuse")
    left = _side("left", present=True, volume=40.04, head=81.0, neck=60.0, pattern="diffuse", effusion=True,
                 effusion_ml=3.0)
    text = draft_findings(_roundtrip(_result(right, left)))
    assert f"oedema of the right femoral head and neck ({fmt_ml(12.3)};" in text
    assert f"oedema of the left femoral head and neck ({fmt_ml(40.04)};" in text
    assert "No right hip joint effusion." in text and f"Left hip joint effusion ({fmt_ml(3.0)})." in text
    assert "normal marrow signal" not in text


def test_avn_like_case_is_focal_with_band() -> None:
    right = _side("right", present=True, volume=2.4, head=9.6, pattern="focal", band=True)
    text = draft_findings(_roundtrip(_result(right, _side("left", present=False))))
    assert f"Focal subchondral bone marrow oedema of the right femoral head ({fmt_ml(2.4)}; {fmt_pct(9.6)} of the head)" \
        in text
    assert "Subchondral low-signal band in the right femoral head." in text
    assert "Diffuse" not in text and "Left hip: normal marrow signal" in text


def test_unlocalised_side_gives_no_numbers() -> None:
    left = SideResult(side="left", localized=False, reason="femoral head not found (implausible sphere fit)")
    text = draft_findings(_roundtrip(_result(_side("right", present=False), left)))
    assert "Left hip: not assessed (femoral head not found (implausible sphere fit)); no measurements." in text


def test_reduced_confidence_is_stated() -> None:
    result = _result(_side("right", present=False), _side("left", present=False),
                     quality=Quality(statement="inhomogeneous fat suppression", confidence="reduced",
                                     warnings=["subcutaneous fat bright on STIR"]))
    text = draft_findings(result)
    assert "Confidence reduced. Technical note: subcutaneous fat bright on STIR." in text


@pytest.mark.parametrize(("status", "phrase"), [("not_applicable", "not performed"), ("failed", "failed")])
def test_not_analysed_says_why(status: str, phrase: str) -> None:
    result = AnalysisResult(status=status, reason="only a T1 series in the study",
                            algorithm=Algorithm(version="0.1.0"))
    text = draft_findings(result)
    assert text.startswith(DRAFT_LABEL)
    assert f"Bone marrow oedema analysis {phrase}: only a T1 series in the study." in text
    assert "mL" not in text


def test_text_is_ascii() -> None:
    left = _side("left", present=True, volume=41.96, head=78.2, neck=55.4, pattern="diffuse")
    assert draft_findings(_result(_side("right", present=False), left)).isascii()


def test_sub_threshold_volume_is_not_called_oedema() -> None:
    right = _side("right", present=False, volume=0.97)
    left = _side("left", present=True, volume=30.0, head=60.0, neck=0.3, pattern="diffuse")
    text = draft_findings(_roundtrip(_result(right, left)))
    assert ("Right hip: no bone marrow oedema detected (1.0 mL of oedema-like signal, below the reporting "
            "threshold).") in text
    assert "oedema of the right" not in text
    assert "<1 % of the neck" in text
