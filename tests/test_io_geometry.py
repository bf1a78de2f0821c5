"""Loading: voxel -> LPS geometry is exact for every orientation, layout and encoding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom import dcmread
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from tests.io_fixtures import (
    AXIAL,
    CORONAL,
    CORONAL_FEET_FIRST,
    STIR_COR,
    T1_COR,
    SeriesSpec,
    centred_geometry,
    encapsulated_series,
    marker_volume,
    oblique_coronal,
    pydicom_file,
    sitk_any,
    write_classic,
    write_enhanced,
)
from workers.io.load import load_study
from workers.io.types import LoadedSeries, Plane, SeriesKind

SHAPE = (9, 36, 44)  # slices, rows, cols (rows != cols catches transposes; >= 32 for JPEG 2000)
MARKER = (2, 27, 6)
SPACING = (1.2, 1.7, 3.5)  # row spacing, column spacing, slice gap

ORIENTATIONS = {
    "coronal": (CORONAL, Plane.CORONAL),
    "axial": (AXIAL, Plane.AXIAL),
    "oblique": (oblique_coronal(), Plane.CORONAL),
    "feet_first": (CORONAL_FEET_FIRST, Plane.CORONAL),
}


def _only(folder: Path) -> LoadedSeries:
    study = load_study(folder)
    assert not study.problems, [p.reason for p in study.problems]
    assert len(study.loaded) == 1
    return study.loaded[0]


def _argmax_index(image: sitk.Image) -> tuple[int, int, int]:
    array = sitk.GetArrayViewFromImage(image)
    z, y, x = np.unravel_index(int(np.argmax(array)), array.shape)
    return int(x), int(y), int(z)


def _assert_marker_at(series: LoadedSeries, point: np.ndarray) -> None:
    image = sitk_any(series.image)
    found = image.TransformPhysicalPointToIndex(tuple(float(v) for v in point))
    assert found == _argmax_index(image)
    centre = np.array(image.TransformIndexToPhysicalPoint(found))
    np.testing.assert_allclose(centre, point, atol=1e-3)


@pytest.mark.parametrize("enhanced", [False, True], ids=["classic", "enhanced"])
@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_marker_found_at_its_lps_point(tmp_path: Path, name: str, enhanced: bool) -> None:
    orientation, plane = ORIENTATIONS[name]
    geometry = centred_geometry(orientation, SHAPE, SPACING)
    spec = SeriesSpec(marker_volume(SHAPE, MARKER), geometry, dict(STIR_COR), series_key=name)
    (write_enhanced if enhanced else write_classic)(tmp_path, spec)

    series = _only(tmp_path)

    _assert_marker_at(series, geometry.lps(*MARKER))
    assert sitk_any(series.image).GetSize() == (SHAPE[2], SHAPE[1], SHAPE[0])
    np.testing.assert_allclose(sitk_any(series.image).GetSpacing(), [SPACING[1], SPACING[0], SPACING[2]], atol=1e-4)
    assert series.classification.plane is plane
    assert series.classification.kind is SeriesKind.STIR
    assert len(series.slices) == SHAPE[0]
    if enhanced:
        assert len(series.datasets) == 1
        assert sorted(s.frame_number or 0 for s in series.slices) == list(range(1, SHAPE[0] + 1))
    else:
        assert len(series.datasets) == SHAPE[0]
        assert all(s.frame_number is None for s in series.slices)
    assert all("PixelData" not in ds for ds in series.datasets)


def test_slices_sorted_along_normal_not_by_instance_number(tmp_path: Path) -> None:
    """Positions written against the normal (negative gap) and scrambled instance numbers."""
    geometry = centred_geometry(CORONAL, SHAPE, (1.2, 1.7, -3.5))
    volume = marker_volume(SHAPE, MARKER)
    write_classic(tmp_path, SeriesSpec(volume, geometry, dict(STIR_COR)))

    series = _only(tmp_path)

    _assert_marker_at(series, geometry.lps(*MARKER))
    normal = np.array(sitk_any(series.image).GetDirection()).reshape(3, 3)[:, 2]
    along = [float(np.dot(ds.ImagePositionPatient, normal)) for ds in series.datasets]
    assert along == sorted(along)
    assert [ds.SOPInstanceUID for ds in series.datasets] == [s.sop_instance_uid for s in series.slices]
    assert sitk_any(series.image).GetSpacing()[2] == pytest.approx(3.5)


def test_patient_left_is_plus_x_on_coronal(tmp_path: Path) -> None:
    """A marker in the patient's LEFT hip (x = +90 mm) lands at +x and on the image right."""
    shape = (5, 40, 80)
    geometry = centred_geometry(CORONAL, shape, (2.0, 2.5, 4.0), centre=(0.0, 0.0, 0.0))
    column = int(round((90.0 - geometry.origin[0]) / 2.5))
    marker = (2, 20, column)
    write_classic(tmp_path, SeriesSpec(marker_volume(shape, marker), geometry, dict(T1_COR)))

    image = sitk_any(_only(tmp_path).image)

    x, y, z = _argmax_index(image)
    point = image.TransformIndexToPhysicalPoint((x, y, z))
    assert point[0] == pytest.approx(90.0, abs=1.3)
    assert x > shape[2] // 2  # IOP row (1,0,0): patient left on the image right


def test_rescale_slope_intercept_applied(tmp_path: Path) -> None:
    geometry = centred_geometry(AXIAL, SHAPE, SPACING)
    volume = marker_volume(SHAPE, MARKER, value=1000)
    write_classic(tmp_path, SeriesSpec(volume, geometry, dict(STIR_COR), rescale=(0.5, -20.0)))

    array = sitk.GetArrayFromImage(_only(tmp_path).image)

    assert array.dtype == np.float32
    assert array.max() == pytest.approx(1000 * 0.5 - 20.0)
    assert array.min() >= 50 * 0.5 - 20.0


def test_enhanced_pixel_value_transformation_applied(tmp_path: Path) -> None:
    geometry = centred_geometry(CORONAL, SHAPE, SPACING)
    spec = SeriesSpec(marker_volume(SHAPE, MARKER, value=2000), geometry, dict(STIR_COR), rescale=(2.0, 5.0))
    write_enhanced(tmp_path, spec)

    image = _only(tmp_path).image

    assert sitk.GetArrayViewFromImage(image).max() == pytest.approx(4005.0)


@pytest.mark.parametrize(
    "syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless, DeflatedExplicitVRLittleEndian],
    ids=["rle", "jpeg-ls", "jpeg2000", "deflate"],
)
@pytest.mark.parametrize("enhanced", [False, True], ids=["classic", "enhanced"])
def test_compressed_transfer_syntaxes_decode_losslessly(tmp_path: Path, syntax: str, enhanced: bool) -> None:
    geometry = centred_geometry(CORONAL, SHAPE, SPACING)
    volume = marker_volume(SHAPE, MARKER)
    spec = SeriesSpec(volume, geometry, dict(STIR_COR), transfer_syntax=syntax)
    (write_enhanced if enhanced else write_classic)(tmp_path, spec)

    series = _only(tmp_path)

    np.testing.assert_array_equal(sitk.GetArrayFromImage(series.image), volume.astype(np.float32))
    _assert_marker_at(series, geometry.lps(*MARKER))


def test_jpeg_baseline_series_decodes(tmp_path: Path) -> None:
    from io import BytesIO

    from PIL import Image

    shape = (4, 32, 40)
    geometry = centred_geometry(AXIAL, shape, SPACING)
    volume = np.zeros(shape, dtype=np.uint8)
    volume[:, 8:24, 10:30] = 200
    fragments = []
    for k in range(shape[0]):
        buffer = BytesIO()
        Image.fromarray(volume[k]).save(buffer, format="JPEG", quality=95)
        fragments.append(buffer.getvalue())
    encapsulated_series(tmp_path, "jpeg", JPEGBaseline8Bit, fragments, geometry, *shape[1:], bits=8)

    array = sitk.GetArrayFromImage(_only(tmp_path).image)

    assert np.abs(array - volume).mean() < 3.0  # lossy, but the same picture


def test_jpeg_extended_frames_no_plugin_decodes_are_a_pixel_data_problem(tmp_path: Path) -> None:
    """pydicom's JPEG-lossy.dcm (12-bit Extended) defeats pylibjpeg and pillow: explained, not lost."""
    from pydicom.encaps import generate_fragmented_frames

    source = dcmread(pydicom_file("JPEG-lossy.dcm"))
    assert source.file_meta.TransferSyntaxUID == JPEGExtended12Bit
    fragment = b"".join(next(generate_fragmented_frames(source.PixelData, number_of_frames=1)))
    geometry = centred_geometry(AXIAL, (2, source.Rows, source.Columns), SPACING)
    encapsulated_series(tmp_path, "jpegext", JPEGExtended12Bit, [fragment] * 2, geometry, source.Rows,
                        source.Columns, bits=12)

    study = load_study(tmp_path)

    assert not study.loaded
    assert [p.kind for p in study.problems] == ["pixel_data"]
    assert "JPEG Extended" in study.problems[0].reason


def test_jpeg_lossless_series_decodes(tmp_path: Path) -> None:
    """Frames taken from pydicom's JPEG Lossless SV1 test file, put in an MR series."""
    from pydicom.encaps import generate_fragmented_frames

    source = dcmread(pydicom_file("JPEG-LL.dcm"))
    assert source.file_meta.TransferSyntaxUID == JPEGLosslessSV1
    fragment = b"".join(next(generate_fragmented_frames(source.PixelData, number_of_frames=1)))
    geometry = centred_geometry(AXIAL, (3, source.Rows, source.Columns), SPACING)
    encapsulated_series(
        tmp_path, "jpegll", JPEGLosslessSV1, [fragment] * 3, geometry, source.Rows, source.Columns,
        bits=int(source.BitsStored), signed=bool(source.PixelRepresentation),
    )

    loaded = sitk.GetArrayFromImage(_only(tmp_path).image)

    assert loaded.shape == (3, source.Rows, source.Columns)
    for k in range(3):
        np.testing.assert_array_equal(loaded[k], source.pixel_array.astype(np.float32))


def test_tri_plane_localizer_split_into_stacks(tmp_path: Path) -> None:
    """One series with coronal, axial and sagittal slices -> three stacks, all localizers."""
    headers: dict[str, Any] = {**T1_COR, "SeriesDescription": "3-plane loc", "RepetitionTime": 8, "EchoTime": 3}
    sagittal = ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0))
    for part, orientation in enumerate((CORONAL, AXIAL, sagittal)):
        geometry = centred_geometry(orientation, (3, 16, 16), (2.0, 2.0, 6.0))
        volume = marker_volume((3, 16, 16), (1, 8, 8))
        write_classic(tmp_path, SeriesSpec(volume, geometry, headers, series_key="loc", part=str(part)))

    study = load_study(tmp_path)

    assert not study.problems, [p.reason for p in study.problems]
    assert len({s.series_instance_uid for s in study.loaded}) == 1
    assert sorted(s.classification.plane.value for s in study.loaded) == ["axial", "coronal", "sagittal"]
    assert {s.classification.kind for s in study.loaded} == {SeriesKind.LOCALIZER}
    assert all("split into 3 stacks" in s.warnings[0] for s in study.loaded)


def test_non_dicom_and_non_image_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    geometry = centred_geometry(CORONAL, SHAPE, SPACING)
    write_classic(tmp_path, SeriesSpec(marker_volume(SHAPE, MARKER), geometry, dict(STIR_COR)))
    (tmp_path / "notes.txt").write_text("not dicom")
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    for name in ("rtdose.dcm", "CT_small.dcm", "test-SR.dcm"):
        (tmp_path / "nested" / "deeper" / name).write_bytes(Path(pydicom_file(name)).read_bytes())

    study = load_study(tmp_path)

    assert [s.classification.kind for s in study.loaded] == [SeriesKind.STIR]
    assert [f.path.name for f in study.skipped_files] == ["notes.txt"]
    assert "not a DICOM" in study.skipped_files[0].reason
    kinds = sorted(p.kind for p in study.problems)
    assert kinds == ["not_an_image", "not_an_image", "not_mr"]
    assert any("Comprehensive SR Storage" in p.reason for p in study.problems)
    assert any("CT Image Storage" in p.reason for p in study.problems)


@pytest.mark.parametrize(
    "name",
    ["MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_padded.dcm",
     "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"],
)
def test_real_mr_small_encodings_decode_like_pydicom(tmp_path: Path, name: str) -> None:
    """pydicom's MR_small in each transfer syntax, made a 2-slice series: same values as pydicom."""
    reference = dcmread(pydicom_file("MR_small.dcm")).pixel_array.astype(np.float32)
    for k in range(2):
        ds = dcmread(pydicom_file(name))
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{k + 1}"
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1],
                                   float(ds.ImagePositionPatient[2]) + 5.0 * k]
        ds.save_as(tmp_path / f"{k}.dcm")

    series = _only(tmp_path)

    array = sitk.GetArrayFromImage(series.image)
    np.testing.assert_array_equal(array[0], reference)
    np.testing.assert_array_equal(array[1], reference)
    assert sitk_any(series.image).GetSpacing()[2] == pytest.approx(5.0)


def test_enhanced_instance_with_two_stacks_loads_both(tmp_path: Path) -> None:
    """Frames of one Enhanced MR object in two orientations: two volumes, each decoded right."""
    shape = (8, 36, 44)
    volume = marker_volume(shape, (1, 1, 1))
    coronal = centred_geometry(CORONAL, shape, SPACING)

    def two_stacks(_: int, ds: Any) -> None:
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence as DicomSequence

        del ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
        for i, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
            item = Dataset()
            if i % 2:
                item.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
                position = [-30.0, -40.0, 12.0 * (i // 2)]
            else:
                item.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
                position = [float(v) for v in coronal.slice_position(i // 2)]
            frame.PlaneOrientationSequence = DicomSequence([item])
            frame.PlanePositionSequence[0].ImagePositionPatient = position

    write_enhanced(tmp_path, SeriesSpec(volume, coronal, dict(STIR_COR), mutate=two_stacks))
    order = np.random.default_rng(5).permutation(shape[0])  # frame i holds volume[order[i]]

    study = load_study(tmp_path)

    assert not study.problems, [p.reason for p in study.problems]
    planes = {s.classification.plane: s for s in study.loaded}
    assert set(planes) == {Plane.CORONAL, Plane.AXIAL}
    for plane, first_frame in ((Plane.CORONAL, 0), (Plane.AXIAL, 1)):
        series = planes[plane]
        assert [s.frame_number for s in series.slices] == list(range(first_frame + 1, shape[0] + 1, 2))
        expected = volume[order[first_frame::2]].astype(np.float32)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(series.image), expected)
        assert "PixelData" not in series.datasets[0]


def test_resent_instance_is_read_once(tmp_path: Path) -> None:
    geometry = centred_geometry(CORONAL, SHAPE, SPACING)
    paths = write_classic(tmp_path, SeriesSpec(marker_volume(SHAPE, MARKER), geometry, dict(STIR_COR)))
    copy = tmp_path / "resent" / "again.dcm"
    copy.parent.mkdir()
    copy.write_bytes(paths[0].read_bytes())

    study = load_study(tmp_path)

    assert not study.problems
    assert len(study.skipped_files) == 1
    assert "duplicate of SOPInstanceUID" in study.skipped_files[0].reason
    assert study.skipped_files[0].path in (copy, paths[0])
    assert len(study.loaded[0].slices) == SHAPE[0]


def test_enhanced_per_frame_rescale_applied_per_frame(tmp_path: Path) -> None:
    """PixelValueTransformationSequence per frame (slope k+1 for frame k) beats the shared one."""
    geometry = centred_geometry(CORONAL, SHAPE, SPACING)
    volume = np.full(SHAPE, 10, dtype=np.uint16)

    def per_frame_slopes(_: int, ds: Any) -> None:
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence as DicomSequence

        for i, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
            item = Dataset()
            item.RescaleSlope, item.RescaleIntercept, item.RescaleType = i + 1, 0, "US"
            frame.PixelValueTransformationSequence = DicomSequence([item])

    write_enhanced(tmp_path, SeriesSpec(volume, geometry, dict(STIR_COR), rescale=(100.0, 0.0),
                                        mutate=per_frame_slopes))
    order = np.random.default_rng(5).permutation(SHAPE[0])  # frame i holds slice order[i]

    array = sitk.GetArrayFromImage(_only(tmp_path).image)

    slope_of_slice = {int(k): i + 1 for i, k in enumerate(order)}
    assert [float(array[z].max()) for z in range(SHAPE[0])] == [10.0 * slope_of_slice[z] for z in range(SHAPE[0])]


def test_philips_private_scale_slope_is_mentioned(tmp_path: Path) -> None:
    def philips(_: int, ds: Any) -> None:
        ds.add_new(0x20050010, "LO", "Philips MR Imaging DD 001")
        ds.add_new(0x2005100E, "FL", 0.0123)

    geometry = centred_geometry(CORONAL, SHAPE, SPACING)
    write_classic(tmp_path, SeriesSpec(marker_volume(SHAPE, MARKER), geometry, dict(STIR_COR), mutate=philips))

    series = _only(tmp_path)

    assert any("Philips private scale slope" in w for w in series.warnings)
