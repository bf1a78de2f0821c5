# mypy: disallow-untyped-calls=False
"""Motion ghosts and wrap-around on the fluid-sensitive series: the phantom makes them, the analysis
catches them and withholds the corrupted hips instead of reporting false oedema (small phantoms,
fixed seeds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from tests.analysis_fixtures import AnalysedFactory, analysed
from tests.phantom_fixtures import StudyFactory, phantom_study, series_files
from workers.analysis.anatomy import FemurGeometry, Localization
from workers.analysis.params import AnalysisParameters
from workers.analysis.quality import check_phase_encode_artefacts
from workers.analysis.result import AnalysisResult, Side
from workers.phantom import GroundTruth, generate_study, truth_dir

__all__ = ["analysed", "phantom_study"]  # session fixtures used below

FALSE_ML_MAX = 1.0


def _stir_header(study: Path, truth: GroundTruth) -> pydicom.Dataset:
    folder = next(s.folder for s in truth.series if s.series_instance_uid == truth.fluid_sensitive_series_uid)
    return pydicom.dcmread(series_files(study, folder)[0], stop_before_pixels=True)


def _artefact_warnings(result: AnalysisResult) -> list[str]:
    assert result.quality is not None
    return [w for w in result.quality.warnings if "motion" in w or "wrap" in w]


@pytest.mark.parametrize(("variant", "seed"), [("motion", 3), ("wrap", 4)])
def test_phantom_records_the_artefact(phantom_study: StudyFactory, variant: str, seed: int) -> None:
    """truth.json names the artefact, its phase-encode direction (as in the header) and the corrupted hips;
    the artefact creates no oedema."""
    study, truth = phantom_study("normal", variant, seed=seed)
    art = truth.artefact
    assert art is not None and art["kind"] == variant
    header = _stir_header(study, truth)
    assert header.InPlanePhaseEncodingDirection == art["phase_encoding_direction"] == "ROW"
    assert art["phase_encoding_lps_axis"] == "R-L"
    assert art["corrupted_sides"], art
    for side in ("right", "left"):
        assert truth.sides[side].present is False
        assert truth.sides[side].artefact_corrupted == (side in art["corrupted_sides"])
    if variant == "wrap":
        assert float(header.PercentPhaseFieldOfView) < 70.0
        assert art["phase_fov_mm"] < 250.0
    else:
        assert art["ghost_spacing_mm"] == pytest.approx(art["phase_fov_mm"] / 4)
    reloaded = GroundTruth.load(truth_dir(study.parent) / "truth.json")
    assert reloaded.artefact == art


def test_wrap_variant_is_deterministic(tmp_path: Path) -> None:
    a = generate_study(tmp_path / "a", "normal", 4, variants=["wrap"], small=True)
    b = generate_study(tmp_path / "b", "normal", 4, variants=["wrap"], small=True)
    assert a.artefact == b.artefact
    folder = next(s.folder for s in a.series if s.series_instance_uid == a.fluid_sensitive_series_uid)
    for fa, fb in zip(series_files(tmp_path / "a", folder), series_files(tmp_path / "b", folder), strict=True):
        assert fa.read_bytes() == fb.read_bytes()


@pytest.mark.parametrize(("variant", "seed"), [("motion", 3), ("wrap", 4)])
def test_artefact_gives_no_false_oedema(analysed: AnalysedFactory, variant: str, seed: int) -> None:
    """A normal study with motion ghosts or wrap-around: no oedema reported, the corrupted hips withheld,
    and a warning naming the artefact."""
    a = analysed("normal", variant, seed=seed)
    assert a.result.status == "analyzed", a.result.reason
    for side in ("right", "left"):
        reported = a.result.sides[side]
        assert reported.present is not True, (side, reported)
        assert (reported.oedema_volume_ml or 0.0) < FALSE_ML_MAX
        if a.truth.sides[side].artefact_corrupted:
            assert reported.present is None and variant in reported.reason, (side, reported)
    warnings = _artefact_warnings(a.result)
    assert any(variant in w for w in warnings), a.result.quality
    assert a.result.quality is not None and a.result.quality.confidence in ("reduced", "withheld")


def test_itoh_left_with_motion_never_invents_a_right_finding(analysed: AnalysedFactory) -> None:
    a = analysed("itoh_left", "motion", seed=2)
    right, left = a.result.sides["right"], a.result.sides["left"]
    assert right.present is not True, right
    assert left.present is None or left.present is True, left  # withheld, or the real oedema
    assert any("motion" in w for w in _artefact_warnings(a.result))


@pytest.mark.parametrize(("case", "variants", "seed"), [
    ("normal", (), 3), ("itoh_left", (), 2), ("itoh_left", ("mismatched_grids",), 0),
])
def test_no_artefact_warning_without_artefact(analysed: AnalysedFactory, case: str, variants: tuple[str, ...],
                                              seed: int) -> None:
    a = analysed(case, *variants, seed=seed)
    assert a.result.status == "analyzed"
    assert _artefact_warnings(a.result) == []
    for side in ("right", "left"):
        assert a.result.sides[side].present == a.truth.sides[side].present


def _coronal(values: np.ndarray, x0: float, spacing: float) -> sitk.Image:
    """A coronal stack (slices, rows, cols): columns along +x (patient left), rows downwards (-z)."""
    img = sitk.GetImageFromArray(values.astype(np.float32))
    img.SetSpacing((spacing, spacing, 5.0))
    img.SetOrigin((x0, -30.0, 100.0))
    img.SetDirection((1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0))
    return img


def _femur(side: Side, x: float) -> FemurGeometry:
    return FemurGeometry(side=side, centre=(x, -15.0, 0.0), radius_mm=22.0, neck_axis=(0.0, 0.0, -1.0),
                         neck_radius_mm=14.0, neck_length_mm=50.0, edge_coherence=0.9, shaft_found=True)


def _textured_body(x0: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """(slices, rows, cols) of a body from x=-130 to x=+180 mm with smooth texture (muscle, fat
    planes), columns every 3 mm from ``x0``."""
    xs = x0 + 3.0 * np.arange(n)
    inside = ((xs >= -130.0) & (xs <= 180.0)).astype(np.float32)
    texture = ndimage.gaussian_filter(rng.normal(0.0, 1.0, size=(6, 80, n)), (0.0, 2.0, 2.0))
    vol = inside[None, None, :] * (400.0 + 800.0 * texture)
    vol[:, :8] = 0.0  # air above the body
    out: np.ndarray = np.clip(vol, 0.0, None).astype(np.float32)
    return out


def test_wrap_withholds_only_the_hip_the_folded_anatomy_reaches() -> None:
    """Anatomy rendered over three fields of view along the rows (x) and aliased into the middle one
    (-120..+120 mm): 60 mm beyond the left edge fold in over the right hip (x=-80), 10 mm beyond the
    right edge stay clear of the left hip (x=+80); the T1 (FOV -200..+200) measures how much lies
    beyond. The same anatomy cropped from an oversampled acquisition (no fold) is no wrap-around,
    although it reaches both edges."""
    rng = np.random.default_rng(0)
    wide = _textured_body(-118.5 - 240.0, 240, rng)
    folded = wide[:, :, :80] + wide[:, :, 80:160] + wide[:, :, 160:]
    noise = rng.normal(10.0, 3.0, size=folded.shape).astype(np.float32)
    t1 = _coronal(_textured_body(-198.5, 134, rng), -198.5, 3.0)
    loc = Localization(femurs={"right": _femur("right", -80.0), "left": _femur("left", 80.0)},
                       reasons={}, body_centre_x_mm=25.0)
    check = check_phase_encode_artefacts(_coronal(folded + noise, -118.5, 3.0), t1, loc, AnalysisParameters())
    assert check.ghost_axis is None
    assert check.wrap_axis == "ROW", check.seam_correlation
    assert set(check.corrupted) == {"right"}, check.corrupted
    assert "wrap-around" in check.corrupted["right"] and "on the T1" in check.corrupted["right"]
    # without a T1 to measure the fold depth: a third of the field of view from each edge is assumed
    assert set(check_phase_encode_artefacts(_coronal(folded + noise, -118.5, 3.0), None, loc,
                                            AnalysisParameters()).corrupted) == {"right", "left"}
    # oversampled: the anatomy reaches both edges but nothing folds
    cropped = _coronal(wide[:, :, 80:160] + noise, -118.5, 3.0)
    clean = check_phase_encode_artefacts(cropped, t1, loc, AnalysisParameters())
    assert clean.wrap_axis is None and clean.corrupted == {}, clean.seam_correlation
