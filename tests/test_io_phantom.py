"""Acceptance on phantom studies: loaded geometry equals the generator's truth, the skin markers
and the oedema sit at their LPS points (patient left = +x), classification and selection match.

Each study is generated once per module (small matrices); the sets cover every case and the
geometry/encoding/vendor variants that matter to loading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from numpy.typing import NDArray
from pydicom import dcmread

from tests.io_fixtures import sitk_any
from workers.io import errors
from workers.io.classify import classify_series
from workers.io.load import StudyLoad, load_study
from workers.io.select import select_series
from workers.io.types import LoadedSeries, Plane, SeriesKind
from workers.phantom import GroundTruth, SeriesTruth, dicom_dir, generate_study

PHANTOM_SETS: dict[str, tuple[str, list[str]]] = {
    "oblique-siemens-rle": ("itoh_left", ["oblique", "siemens", "rle"]),
    "feetfirst-ge-jpegls": ("itoh_right", ["feet_first", "ge", "jpegls"]),
    "enhanced-philips-j2k": ("bilateral", ["enhanced_stir", "philips", "jpeg2000", "nonascii_utf8"]),
    "axialonly-localizer": ("normal", ["axial_only", "localizer"]),
    "mismatched-lowres-noisy": ("avn_left", ["mismatched_grids", "low_res", "noisy"]),
    "followup-fatsatfailure": ("followup_improved", ["fat_sat_failure"]),
    "followup-resolved-identity": ("followup_resolved", ["nonascii_name", "other_patient"]),
}
KIND_OF_CONTRAST = {"t1": SeriesKind.T1, "stir": SeriesKind.STIR, "t2fs": SeriesKind.T2_FS}


@pytest.fixture(scope="module", params=list(PHANTOM_SETS))
def phantom(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[GroundTruth, StudyLoad, Path]:
    case, variants = PHANTOM_SETS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    truth = generate_study(folder, case, seed=5, variants=variants, small=True)
    return truth, load_study(dicom_dir(folder)), dicom_dir(folder)


def _by_uid(study: StudyLoad) -> dict[str, LoadedSeries]:
    return {s.series_instance_uid: s for s in study.loaded}


def _physical_to_index(image: Any, points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Continuous (x, y, z) indices of LPS points, from the image's own geometry."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    offsets = points - np.array(image.GetOrigin())
    index: NDArray[np.float64] = (offsets @ direction) / np.array(image.GetSpacing())
    return index


def _ball_mean(image: Any, centre: NDArray[np.float64], radius_mm: float) -> float | None:
    """Mean intensity of the voxels whose centres lie within ``radius_mm`` of ``centre``."""
    array = sitk.GetArrayViewFromImage(image)
    zz, yy, xx = np.indices(array.shape)
    index = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1).astype(float)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    points = np.array(image.GetOrigin()) + (index * np.array(image.GetSpacing())) @ direction.T
    inside = np.linalg.norm(points - centre, axis=1) <= radius_mm
    if not inside.any():
        return None
    return float(array.ravel()[inside].mean())


def _loaded_truth(truth: GroundTruth, study: StudyLoad) -> list[tuple[SeriesTruth, LoadedSeries]]:
    loaded = _by_uid(study)
    return [(t, loaded[t.series_instance_uid]) for t in truth.series if t.series_instance_uid in loaded]


def test_every_series_loaded_or_explained(phantom: tuple[GroundTruth, StudyLoad, Path]) -> None:
    truth, study, folder = phantom
    loaded = _by_uid(study)
    for series in truth.series:
        problems = [p for p in study.problems if p.series_instance_uid == series.series_instance_uid]
        if series.contrast == "localizer":  # one slice per plane: explained, never a volume
            assert series.series_instance_uid not in loaded
            assert problems and all(type(p.error) is errors.SingleSliceError for p in problems)
            assert len(problems) == series.n_files
            headers = [dcmread(path, stop_before_pixels=True) for path in sorted((folder / series.folder).iterdir())]
            assert classify_series(headers).kind is SeriesKind.LOCALIZER
        else:
            assert series.series_instance_uid in loaded, series.description
            assert not problems
    assert len(study.loaded) == len([s for s in truth.series if s.contrast != "localizer"])
    assert study.skipped_files == []  # the truth is beside the study folder, not in it


def test_geometry_equals_truth(phantom: tuple[GroundTruth, StudyLoad, Path]) -> None:
    truth, study, _ = phantom
    pairs = _loaded_truth(truth, study)
    assert pairs
    for expected, series in pairs:
        geo = expected.geometry
        image = sitk_any(series.image)
        np.testing.assert_allclose(image.GetOrigin(), geo["origin_lps_mm"], atol=1e-3)
        direction = np.array(image.GetDirection()).reshape(3, 3)
        np.testing.assert_allclose(direction[:, 0], geo["row_dir"], atol=1e-5)
        np.testing.assert_allclose(direction[:, 1], geo["col_dir"], atol=1e-5)
        np.testing.assert_allclose(direction[:, 2], geo["normal"], atol=1e-5)
        row_spacing, col_spacing = geo["pixel_spacing_mm"]
        np.testing.assert_allclose(image.GetSpacing(), [col_spacing, row_spacing, geo["slice_spacing_mm"]], atol=1e-4)
        assert image.GetSize() == (geo["cols"], geo["rows"], geo["n_slices"])


def test_skin_markers_found_at_their_lps_points(phantom: tuple[GroundTruth, StudyLoad, Path]) -> None:
    """Each bright capsule is bright where truth puts it and not at its left-right mirror.

    Checked on the fat-suppressed series (on T1 the mirror point is bright subcutaneous fat);
    the T1 geometry is checked exactly against truth above.
    """
    truth, study, _ = phantom
    if "fat_sat_failure" in truth.variants:
        pytest.skip("fat-sat failure makes one side's fat bright by design")
    checked = 0
    for _, series in _loaded_truth(truth, study):
        if not series.classification.fat_suppressed:
            continue
        image = sitk_any(series.image)
        size = np.array(image.GetSize())
        for marker in truth.markers:
            centre = np.array(marker["lps_mm"], dtype=float)
            mirror = centre * np.array([-1.0, 1.0, 1.0])
            index = _physical_to_index(image, np.stack([centre, mirror]))
            if not np.all((index > -0.5) & (index < size - 0.5)):
                continue  # this marker or its mirror is outside this series' field of view
            at_marker = _ball_mean(image, centre, 4.0)
            at_mirror = _ball_mean(image, mirror, 4.0)
            assert at_marker is not None and at_mirror is not None
            assert at_marker > 2.0 * at_mirror, (series.series_description, marker["name"])
            checked += 1
    assert checked >= 2


def test_oedema_is_bright_on_its_side_of_the_loaded_fluid_series(phantom: tuple[GroundTruth, StudyLoad, Path]) -> None:
    """Truth oedema voxels (label 1 right, 2 left) are brighter than their x-mirror on the loaded volume."""
    truth, study, folder = phantom
    sides = {name: side for name, side in truth.sides.items() if side.present and side.pattern == "diffuse"}
    if not sides:
        pytest.skip(f"case {truth.case} has no diffuse oedema")
    fluid = sitk_any(_by_uid(study)[truth.fluid_sensitive_series_uid].image)
    mask = sitk_any(sitk.ReadImage(str(folder.parent / truth.files["oedema"])))  # relative to the phantom folder
    labels = sitk.GetArrayFromImage(mask)
    values = sitk.GetArrayViewFromImage(fluid)
    for name, label in (("right", 1), ("left", 2)):
        if name not in sides:
            continue
        zz, yy, xx = np.nonzero(labels == label)
        index = np.stack([xx, yy, zz], axis=1).astype(float)
        direction = np.array(mask.GetDirection()).reshape(3, 3)
        points = np.array(mask.GetOrigin()) + (index * np.array(mask.GetSpacing())) @ direction.T
        assert (np.sign(points[:, 0].mean()) > 0) == (name == "left")  # patient left is +x
        here = np.rint(_physical_to_index(fluid, points)).astype(int)
        there = np.rint(_physical_to_index(fluid, points * np.array([-1.0, 1.0, 1.0]))).astype(int)
        inside = np.all((there >= 0) & (there < np.array(fluid.GetSize())), axis=1)
        oedema = values[here[:, 2], here[:, 1], here[:, 0]].mean()
        mirror = values[there[inside, 2], there[inside, 1], there[inside, 0]].mean()
        if len(sides) == 1 and "fat_sat_failure" not in truth.variants:
            assert oedema > 1.3 * mirror, (name, oedema, mirror)
        else:  # bilateral, or the other side's fat left bright by a failed fat saturation
            assert oedema > 0.5 * mirror, (name, oedema, mirror)


def test_classification_matches_truth(phantom: tuple[GroundTruth, StudyLoad, Path]) -> None:
    truth, study, _ = phantom
    for expected, series in _loaded_truth(truth, study):
        cls = series.classification
        assert cls.kind is KIND_OF_CONTRAST[expected.contrast], (expected.description, cls.evidence)
        assert cls.plane is Plane(expected.plane), (expected.description, cls.evidence)
        assert bool(expected.enhanced) == (series.slices[0].frame_number is not None)


def test_selection_matches_truth(phantom: tuple[GroundTruth, StudyLoad, Path]) -> None:
    truth, study, _ = phantom

    selection = select_series(study.loaded, study.problems)

    assert selection.applicable, selection.not_applicable_reason
    assert selection.fluid_sensitive is not None
    assert selection.fluid_sensitive.series_instance_uid == truth.fluid_sensitive_series_uid
    assert (selection.t1.series_instance_uid if selection.t1 else None) == truth.t1_series_uid
