# mypy: disallow-untyped-calls=False
"""Accuracy floors of the oedema analysis on small phantom studies with fixed seeds.

Floors, not timings: a regression in laterality, Dice, volume, false oedema, pattern or
effusion fails here. The benchmark (benchmarks/accuracy.py) reports the full table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from marrowmap.cli import main
from tests.analysis_fixtures import Analysed, AnalysedFactory, analysed, copy_study, rewrite_headers
from tests.phantom_fixtures import phantom_study
from workers.pipeline import analyze_study_dir

__all__ = ["analysed", "phantom_study"]  # session fixtures used below

DICE_FLOOR_DIFFUSE = 0.85  # small phantoms (2 mm pixels, 5.5 mm slices); full size is higher (benchmark)
VOLUME_ERROR_MAX = 0.15  # against the model's continuous volume
NORMAL_FALSE_ML_MAX = 1.0


def _check_sides(a: Analysed) -> None:
    """Laterality: the sides called positive are exactly the truth's."""
    for side in ("right", "left"):
        reported = a.result.sides[side]
        assert reported.localized, reported.reason
        assert reported.present == a.truth.sides[side].present, (side, reported)


@pytest.mark.parametrize(("case", "variants", "seed"), [
    ("itoh_left", (), 0),
    ("itoh_right", ("feet_first",), 1),
    ("bilateral", (), 2),
    ("itoh_left", ("oblique",), 1),
    ("itoh_right", ("mismatched_grids",), 0),
])
def test_diffuse_oedema_side_dice_and_volume(analysed: AnalysedFactory, case: str, variants: tuple[str, ...],
                                             seed: int) -> None:
    a = analysed(case, *variants, seed=seed)
    assert a.result.status == "analyzed", a.result.reason
    _check_sides(a)
    for side in ("right", "left"):
        reported = a.result.sides[side]
        if not a.truth.sides[side].present:
            assert reported.oedema_volume_ml is not None and reported.oedema_volume_ml < NORMAL_FALSE_ML_MAX
            continue
        assert reported.pattern == "diffuse"
        assert a.dice(side) >= DICE_FLOOR_DIFFUSE, (side, a.dice(side))
        truth_ml = a.truth.sides[side].volume_ml
        assert reported.oedema_volume_ml is not None
        assert abs(reported.oedema_volume_ml - truth_ml) <= VOLUME_ERROR_MAX * truth_ml, (reported.oedema_volume_ml, truth_ml)
        assert reported.head_involvement_pct is not None and reported.head_involvement_pct > 40
        assert reported.largest_slice_index is not None
        assert reported.effusion is True and (reported.effusion_volume_ml or 0) > 1.0


def test_normal_hips_have_no_oedema_and_no_effusion(analysed: AnalysedFactory) -> None:
    a = analysed("normal", seed=1)
    assert a.result.status == "analyzed"
    for side in ("right", "left"):
        s = a.result.sides[side]
        assert s.present is False and s.pattern == "none" and s.effusion is False
        assert s.oedema_volume_ml is not None and s.oedema_volume_ml < NORMAL_FALSE_ML_MAX
        assert s.reference is not None and "normal marrow of the same femur" in s.reference


def test_avn_is_focal_not_diffuse(analysed: AnalysedFactory) -> None:
    a = analysed("avn_left", seed=0)
    left, right = a.result.sides["left"], a.result.sides["right"]
    assert left.present is True and left.pattern == "focal"
    assert (left.neck_involvement_pct or 0.0) < 20.0
    assert right.present is False and right.pattern == "none"


def test_failed_fat_suppression_warns_without_false_oedema(analysed: AnalysedFactory) -> None:
    a = analysed("normal", "fat_sat_failure", seed=0)
    assert a.result.status == "analyzed"
    assert a.result.quality.fat_suppression_ok is False
    assert a.result.quality.confidence != "normal"
    assert any("fat suppression" in w for w in a.result.quality.warnings)
    for side in ("right", "left"):
        s = a.result.sides[side]
        assert s.present in (False, None), (side, s.oedema_volume_ml)


@pytest.mark.parametrize("case", ["normal", "itoh_left", "itoh_right", "bilateral", "avn_left",
                                  "followup_resolved", "followup_improved"])
def test_every_oedema_voxel_lies_in_the_segmented_femoral_marrow(analysed: AnalysedFactory, case: str) -> None:
    a = analysed(case, seed=0)
    assert a.result.status == "analyzed", a.result.reason
    oedema = sitk.GetArrayFromImage(sitk.ReadImage(str(a.out / "oedema_mask.nii.gz")))
    marrow = sitk.GetArrayFromImage(sitk.ReadImage(str(a.out / "marrow.nii.gz")))
    for label in (1, 2):
        assert not ((oedema == label) & (marrow != label)).any()
    assert (marrow > 0).any()


def test_result_json_and_maps_are_written(analysed: AnalysedFactory) -> None:
    a = analysed("itoh_left", seed=0)
    data = json.loads((a.out / "result.json").read_text())
    assert data["status"] == "analyzed"
    assert data["series_used"]["fluid_sensitive"] == a.truth.fluid_sensitive_series_uid
    assert data["series_used"]["t1"] == a.truth.t1_series_uid
    for side in ("left", "right"):
        for key in ("present", "oedema_volume_ml", "head_involvement_pct", "neck_involvement_pct", "pattern",
                    "effusion", "effusion_volume_ml"):
            assert key in data["sides"][side]
    assert {"load", "select", "prepare", "anatomy", "score", "measure", "total"} <= set(data["timings_s"])
    assert data["algorithm"]["version"] and data["algorithm"]["parameters"]
    for name in ("oedema_mask.nii.gz", "score.nii.gz", "regions.nii.gz", "effusion.nii.gz", "marrow.nii.gz"):
        assert (a.out / name).is_file()


def _not_applicable(study: Path, out: Path) -> None:
    result = analyze_study_dir(study, out)
    assert result.status == "not_applicable", result.status
    assert result.reason
    assert not result.sides
    assert json.loads((out / "result.json").read_text())["status"] == "not_applicable"
    assert not (out / "oedema_mask.nii.gz").exists()


def test_t1_only_study_is_not_applicable(phantom_study: object, analysed: AnalysedFactory, tmp_path: Path) -> None:
    a = analysed("itoh_left", seed=0)
    study = copy_study(a.study, tmp_path / "in", keep=lambda f: "T1" in f.parent.name)
    _not_applicable(study, tmp_path / "out")
    run = CliRunner().invoke(main, ["--log-format", "json", "analyze", str(study), "--out", str(tmp_path / "cli")])
    assert run.exit_code == 3, run.output  # not applicable, and the first line says why
    assert run.stdout.splitlines()[0].startswith("not applicable: no fat-suppressed fluid-sensitive series")


@pytest.mark.parametrize("body_part", ["KNEE", "BRAIN"])
def test_other_body_part_is_not_applicable(analysed: AnalysedFactory, tmp_path: Path, body_part: str) -> None:
    a = analysed("itoh_left", seed=0)
    study = copy_study(a.study, tmp_path / "in")
    rewrite_headers(study, BodyPartExamined=body_part, StudyDescription=f"MR {body_part.lower()}",
                    ProtocolName=body_part.lower())
    _not_applicable(study, tmp_path / "out")


def test_single_slice_series_is_not_applicable(analysed: AnalysedFactory, tmp_path: Path) -> None:
    a = analysed("itoh_left", seed=0)
    firsts = {min(d.glob("*.dcm")) for d in a.study.iterdir() if d.is_dir()}
    study = copy_study(a.study, tmp_path / "in", keep=lambda f: f in firsts)
    _not_applicable(study, tmp_path / "out")


def test_cli_analyze_prints_progress_and_summary(analysed: AnalysedFactory, tmp_path: Path) -> None:
    a = analysed("itoh_left", seed=0)
    result = CliRunner().invoke(main, ["--log-format", "console", "analyze", str(a.study), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "locating femoral heads" in result.stderr
    assert "Left hip: diffuse" in result.stdout
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "analyzed"
