"""Selection of the fluid-sensitive fat-suppressed series and the T1 series, with reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.io_fixtures import (
    AXIAL,
    CORONAL,
    STIR_COR,
    T1_COR,
    T2_AX,
    T2FS_AX,
    SeriesSpec,
    centred_geometry,
    marker_volume,
    write_classic,
)
from workers.io.load import StudyLoad, load_study
from workers.io.select import select_series
from workers.io.types import SeriesKind


def _write(folder: Path, key: str, headers: dict[str, Any], orientation: Any = CORONAL,
           shape: tuple[int, int, int] = (6, 32, 32), spacing: tuple[float, float, float] = (1.5, 1.5, 4.0)) -> None:
    geometry = centred_geometry(orientation, shape, spacing)
    write_classic(folder, SeriesSpec(marker_volume(shape, (1, 1, 1)), geometry, headers, series_key=key))


def _load(folder: Path) -> StudyLoad:
    study = load_study(folder)
    assert not study.problems, [p.reason for p in study.problems]
    return study


def test_coronal_stir_and_coronal_t1_chosen(tmp_path: Path) -> None:
    _write(tmp_path, "t1", dict(T1_COR))
    _write(tmp_path, "stir", dict(STIR_COR))
    _write(tmp_path, "t2fs", dict(T2FS_AX), AXIAL)
    study = _load(tmp_path)

    selection = select_series(study.loaded, study.problems)

    assert selection.applicable
    assert selection.fluid_sensitive is not None and selection.t1 is not None
    assert selection.fluid_sensitive.classification.kind is SeriesKind.STIR
    assert selection.t1.classification.kind is SeriesKind.T1
    assert selection.reasons[0].startswith("fluid-sensitive: #1 'COR STIR' (stir coronal, 6 slices) chosen")
    assert any("alternative not chosen: #1 'AX T2 FS' (t2_fs axial" in r for r in selection.reasons)
    assert any("same FrameOfReferenceUID" in r for r in selection.reasons)


def test_plane_outranks_kind_coronal_t2fs_before_axial_stir(tmp_path: Path) -> None:
    _write(tmp_path, "stir_ax", {**STIR_COR, "SeriesDescription": "AX STIR"}, AXIAL)
    _write(tmp_path, "t2fs_cor", {**T2FS_AX, "SeriesDescription": "COR T2 FS"}, CORONAL)

    selection = select_series(_load(tmp_path).loaded)

    assert selection.fluid_sensitive is not None
    assert selection.fluid_sensitive.series_description == "COR T2 FS"


def test_stir_preferred_over_t2fs_and_dixon_water_in_same_plane(tmp_path: Path) -> None:
    _write(tmp_path, "dixon", {**T2FS_AX, "SeriesDescription": "COR T2 DIXON W", "ScanOptions": "",
                               "ImageType": ["DERIVED", "PRIMARY", "DIXON", "WATER"]})
    _write(tmp_path, "t2fs", {**T2FS_AX, "SeriesDescription": "COR T2 FS"})
    _write(tmp_path, "stir", dict(STIR_COR))
    loaded = _load(tmp_path).loaded

    assert select_series(loaded).fluid_sensitive.series_description == "COR STIR"  # type: ignore[union-attr]
    without_stir = [s for s in loaded if s.series_description != "COR STIR"]
    assert select_series(without_stir).fluid_sensitive.series_description == "COR T2 FS"  # type: ignore[union-attr]
    only_dixon = [s for s in loaded if "DIXON" in s.series_description]
    assert select_series(only_dixon).fluid_sensitive.classification.kind is SeriesKind.DIXON_WATER  # type: ignore[union-attr]


def test_larger_coverage_wins_between_equal_kinds(tmp_path: Path) -> None:
    _write(tmp_path, "small", {**STIR_COR, "SeriesDescription": "COR STIR small"}, shape=(5, 32, 32))
    _write(tmp_path, "large", {**STIR_COR, "SeriesDescription": "COR STIR large"}, shape=(12, 32, 32))

    selection = select_series(_load(tmp_path).loaded)

    assert selection.fluid_sensitive is not None
    assert selection.fluid_sensitive.series_description == "COR STIR large"


def test_no_fat_suppressed_fluid_series_is_not_applicable(tmp_path: Path) -> None:
    _write(tmp_path, "t1", dict(T1_COR))
    _write(tmp_path, "t2", dict(T2_AX), AXIAL)

    selection = select_series(_load(tmp_path).loaded)

    assert not selection.applicable
    assert selection.fluid_sensitive is None and selection.t1 is None
    reason = selection.not_applicable_reason or ""
    assert reason.startswith("no fat-suppressed fluid-sensitive series")
    assert "'COR T1 TSE' (t1 coronal, 6 slices)" in reason
    assert "'AX T2 TSE' (t2 without fat suppression axial, 6 slices)" in reason


def test_t1_weighted_dixon_water_is_not_fluid_sensitive(tmp_path: Path) -> None:
    _write(tmp_path, "vibe", {**T1_COR, "SeriesDescription": "t1_vibe_dixon_cor_W", "RepetitionTime": 7,
                              "EchoTime": 2.4, "ImageType": ["DERIVED", "PRIMARY", "DIXON", "WATER"]})

    selection = select_series(_load(tmp_path).loaded)

    assert not selection.applicable
    assert "Dixon water with TR 7 ms: not T2/PD-weighted" in (selection.not_applicable_reason or "")


def test_too_few_slices_is_rejected_and_load_problems_are_cited(tmp_path: Path) -> None:
    _write(tmp_path, "stir", dict(STIR_COR), shape=(2, 32, 32))
    single = SeriesSpec(marker_volume((1, 32, 32), (0, 1, 1)), centred_geometry(CORONAL, (1, 32, 32)),
                        {**STIR_COR, "SeriesDescription": "COR STIR single"}, series_key="stir1")
    write_classic(tmp_path, single)
    study = load_study(tmp_path)

    selection = select_series(study.loaded, study.problems)

    assert not selection.applicable
    reason = selection.not_applicable_reason or ""
    assert "only 2 slices (need >= 3 for a volume)" in reason
    assert "'COR STIR single': only 1 slice" in reason


def test_t1_fat_suppressed_rejected_and_same_frame_of_reference_preferred(tmp_path: Path) -> None:
    _write(tmp_path, "stir", dict(STIR_COR))
    _write(tmp_path, "t1fs", {**T1_COR, "SeriesDescription": "COR T1 FS", "ScanOptions": ["FS"]})
    _write(tmp_path, "t1other", {**T1_COR, "SeriesDescription": "COR T1 other FoR",
                                 "FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.99"}, shape=(12, 32, 32))
    _write(tmp_path, "t1ax", {**T1_COR, "SeriesDescription": "AX T1"}, AXIAL)

    selection = select_series(_load(tmp_path).loaded)

    assert selection.t1 is not None
    assert selection.t1.series_description == "AX T1"  # same frame of reference beats plane
    assert any("T1 fat-suppressed: fatty marrow is not bright" in r for r in selection.reasons)
