"""Loading: each kind of bad input gives a typed error with a readable reason; others still load."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import MPEG2MPML, JPEGLSLossless

from tests.io_fixtures import (
    AXIAL,
    CORONAL,
    STIR_COR,
    T1_COR,
    SeriesSpec,
    centred_geometry,
    encapsulated_series,
    marker_volume,
    pydicom_file,
    sitk_any,
    write_classic,
    write_enhanced,
)
from workers.io import errors
from workers.io.load import SeriesProblem, StudyLoad, load_study
from workers.io.types import SeriesKind

SHAPE = (8, 32, 36)
SPACING = (1.5, 1.5, 4.0)


def _spec(mutate: Any = None, key: str = "stir", orientation: Any = CORONAL) -> SeriesSpec:
    geometry = centred_geometry(orientation, SHAPE, SPACING)
    return SeriesSpec(marker_volume(SHAPE, (3, 10, 10)), geometry, dict(STIR_COR), series_key=key, mutate=mutate)


def _single_problem(study: StudyLoad, kind: type[errors.SeriesLoadError]) -> SeriesProblem:
    assert not study.loaded
    assert len(study.problems) == 1, [p.reason for p in study.problems]
    problem = study.problems[0]
    assert type(problem.error) is kind
    assert isinstance(problem.error, errors.SeriesLoadError)
    assert problem.reason and problem.reason == problem.error.reason
    return problem


def _shift(extra_mm: float, from_slice: int) -> Any:
    def mutate(k: int, ds: Dataset) -> None:
        if k >= from_slice:
            ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1] + extra_mm,
                                       ds.ImagePositionPatient[2]]
    return mutate


def test_gap_in_slice_positions(tmp_path: Path) -> None:
    write_classic(tmp_path, _spec(_shift(4.0, 5)))  # coronal normal is +y: one 8 mm gap

    problem = _single_problem(load_study(tmp_path), errors.NonUniformSpacingError)

    assert "gap of 8.00 mm between slices 5 and 6" in problem.reason
    assert "typical 4.00 mm" in problem.reason
    assert problem.series_description == "COR STIR"


def test_duplicate_slice_positions(tmp_path: Path) -> None:
    def mutate(k: int, ds: Dataset) -> None:
        if k == 4:
            ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1] - 4.0,
                                       ds.ImagePositionPatient[2]]
    write_classic(tmp_path, _spec(mutate))

    problem = _single_problem(load_study(tmp_path), errors.NonUniformSpacingError)

    assert "duplicate slice position" in problem.reason


def test_small_jitter_is_tolerated_with_a_warning(tmp_path: Path) -> None:
    def mutate(k: int, ds: Dataset) -> None:
        jitter = 0.2 if k % 2 else -0.1  # <= 0.3 mm on a 4 mm gap
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1] + jitter,
                                   ds.ImagePositionPatient[2]]
    write_classic(tmp_path, _spec(mutate))

    study = load_study(tmp_path)

    assert not study.problems
    assert sitk_any(study.loaded[0].image).GetSpacing()[2] == pytest.approx(4.0, abs=0.05)
    assert any("jitter" in w for w in study.loaded[0].warnings)


@pytest.mark.parametrize("keyword", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
def test_missing_geometry_attribute(tmp_path: Path, keyword: str) -> None:
    def mutate(k: int, ds: Dataset) -> None:
        if k == 2:
            delattr(ds, keyword)
    write_classic(tmp_path, _spec(mutate))

    problem = _single_problem(load_study(tmp_path), errors.MissingGeometryError)

    assert keyword in problem.reason
    assert "(1 of 8 images)" in problem.reason


def test_enhanced_mr_without_functional_groups_real_file(tmp_path: Path) -> None:
    shutil.copy(pydicom_file("emri_small.dcm"), tmp_path)

    problem = _single_problem(load_study(tmp_path), errors.MissingGeometryError)

    assert "PlanePositionSequence" in problem.reason


def test_sheared_stack(tmp_path: Path) -> None:
    def mutate(k: int, ds: Dataset) -> None:
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0] + 1.5 * k, ds.ImagePositionPatient[1],
                                   ds.ImagePositionPatient[2]]
    write_classic(tmp_path, _spec(mutate))

    problem = _single_problem(load_study(tmp_path), errors.InconsistentGeometryError)

    assert "drift" in problem.reason


def test_single_slice(tmp_path: Path) -> None:
    geometry = centred_geometry(CORONAL, (1, 32, 32), SPACING)
    write_classic(tmp_path, SeriesSpec(marker_volume((1, 32, 32), (0, 5, 5)), geometry, dict(STIR_COR)))

    problem = _single_problem(load_study(tmp_path), errors.SingleSliceError)

    assert "only 1 slice" in problem.reason


def test_single_slice_real_file(tmp_path: Path) -> None:
    shutil.copy(pydicom_file("MR_small.dcm"), tmp_path)

    _single_problem(load_study(tmp_path), errors.SingleSliceError)


def test_mismatched_matrix_sizes(tmp_path: Path) -> None:
    first = centred_geometry(CORONAL, (4, 32, 32), SPACING, centre=(0.0, -8.0, 30.0))
    second = centred_geometry(CORONAL, (4, 40, 40), SPACING, centre=(0.0, 8.0, 30.0))
    write_classic(tmp_path, SeriesSpec(marker_volume((4, 32, 32), (0, 1, 1)), first, dict(STIR_COR), part="a"))
    write_classic(tmp_path, SeriesSpec(marker_volume((4, 40, 40), (0, 1, 1)), second, dict(STIR_COR), part="b"))

    problem = _single_problem(load_study(tmp_path), errors.MismatchedSizeError)

    assert "32x32 (4 slices)" in problem.reason and "40x40 (4 slices)" in problem.reason


def test_pixel_data_shorter_than_matrix(tmp_path: Path) -> None:
    paths = write_classic(tmp_path, _spec())
    ds = dcmread(paths[3])
    ds.PixelData = ds.PixelData[:-64]
    ds.save_as(paths[3])

    problem = _single_problem(load_study(tmp_path), errors.PixelDataError)

    assert "cannot be decoded" in problem.reason or "truncated" in problem.reason


def test_file_cut_inside_pixel_data(tmp_path: Path) -> None:
    paths = write_classic(tmp_path, _spec())
    data = paths[5].read_bytes()
    paths[5].write_bytes(data[: len(data) - 500])

    study = load_study(tmp_path)

    assert not study.loaded
    assert study.problems and isinstance(study.problems[0].error, errors.PixelDataError)


def test_truncated_enhanced_frames(tmp_path: Path) -> None:
    path = write_enhanced(tmp_path, _spec())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3000])

    problem = _single_problem(load_study(tmp_path), errors.PixelDataError)

    assert problem.series_description == "COR STIR"


def test_undecodable_compressed_pixel_data(tmp_path: Path) -> None:
    geometry = centred_geometry(AXIAL, (3, 32, 32), SPACING)
    encapsulated_series(tmp_path, "garbage", JPEGLSLossless, [b"\xff\xd8 not a codestream"] * 3, geometry, 32, 32)

    problem = _single_problem(load_study(tmp_path), errors.PixelDataError)

    assert "JPEG-LS" in problem.reason


def test_unsupported_transfer_syntax(tmp_path: Path) -> None:
    geometry = centred_geometry(AXIAL, (3, 32, 32), SPACING)
    encapsulated_series(tmp_path, "mpeg", MPEG2MPML, [b"\x00\x00\x01\xb3 video"] * 3, geometry, 32, 32, bits=8)

    problem = _single_problem(load_study(tmp_path), errors.UnsupportedTransferSyntaxError)

    assert "MPEG2" in problem.reason


def test_not_mr_and_no_mr_images(tmp_path: Path) -> None:
    shutil.copy(pydicom_file("CT_small.dcm"), tmp_path)

    study = load_study(tmp_path)

    kinds = [type(p.error) for p in study.problems]
    assert kinds == [errors.NotMRError, errors.NoMRImagesError]
    assert "CT Image Storage" in study.problems[0].reason
    assert "no MR images" in study.problems[1].reason


def test_empty_folder_has_no_mr_images(tmp_path: Path) -> None:
    study = load_study(tmp_path)

    assert [type(p.error) for p in study.problems] == [errors.NoMRImagesError]
    assert "empty folder" in study.problems[0].reason


def test_one_bad_series_does_not_stop_the_others(tmp_path: Path) -> None:
    write_classic(tmp_path, _spec(key="stir"))
    bad = SeriesSpec(
        marker_volume(SHAPE, (1, 1, 1)), centred_geometry(CORONAL, SHAPE, SPACING), dict(T1_COR),
        series_key="t1", mutate=_shift(6.0, 3),
    )
    write_classic(tmp_path, bad)
    shutil.copy(pydicom_file("rtdose.dcm"), tmp_path)

    study = load_study(tmp_path)

    assert [s.classification.kind for s in study.loaded] == [SeriesKind.STIR]
    assert sorted(p.kind for p in study.problems) == ["non_uniform_spacing", "not_an_image"]


def test_every_error_kind_is_a_series_load_error() -> None:
    kinds = [
        obj for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.SeriesLoadError) and obj is not errors.SeriesLoadError
    ]
    assert len(kinds) == 10
    assert len({k.kind for k in kinds}) == len(kinds)
    assert all(k("why").reason == "why" for k in kinds)
    assert np.all([str(k("x")) == "x" for k in kinds])
