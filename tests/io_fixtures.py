"""Small deterministic MR DICOM writers for the loading/classification tests.

Geometry follows the DICOM definition directly (PS3.3 C.7.6.2.1.1), independently of the
loader: the centre of pixel (row r, column c) of slice k is
``IPP_k + c * PixelSpacing[1] * rowdir + r * PixelSpacing[0] * coldir`` with
``IPP_k = origin + k * slice_gap * (rowdir x coldir)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

UID_PREFIX = "1.2.826.0.1.3680043.8.498."

T1_COR: dict[str, Any] = {
    "SeriesDescription": "COR T1 TSE",
    "ScanningSequence": "SE",
    "SequenceVariant": ["SK", "SP"],
    "ScanOptions": "",
    "RepetitionTime": 550,
    "EchoTime": 12,
    "ImageType": ["ORIGINAL", "PRIMARY", "M", "NORM"],
}
STIR_COR: dict[str, Any] = {
    "SeriesDescription": "COR STIR",
    "ScanningSequence": ["SE", "IR"],
    "SequenceVariant": ["SK", "SP", "MP"],
    "ScanOptions": "IR",
    "RepetitionTime": 4500,
    "EchoTime": 45,
    "InversionTime": 150,
    "ImageType": ["ORIGINAL", "PRIMARY", "M", "NORM"],
}
T2FS_AX: dict[str, Any] = {
    "SeriesDescription": "AX T2 FS",
    "ScanningSequence": "SE",
    "SequenceVariant": ["SK", "SP"],
    "ScanOptions": ["FS"],
    "RepetitionTime": 4000,
    "EchoTime": 85,
    "ImageType": ["ORIGINAL", "PRIMARY", "M", "NORM"],
}
T2_AX: dict[str, Any] = {**T2FS_AX, "SeriesDescription": "AX T2 TSE", "ScanOptions": ""}

CORONAL = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0))
AXIAL = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
CORONAL_FEET_FIRST = ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0))


def sitk_any(image: object) -> Any:
    """A SimpleITK image typed as Any (SimpleITK's methods are untyped for mypy --strict)."""
    return image


def pydicom_file(name: str) -> str:
    """Path of a file shipped with pydicom / pydicom-data."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    assert isinstance(path, str), name
    return path


def rotation(axis: Sequence[float], degrees: float) -> NDArray[np.float64]:
    """Rodrigues rotation matrix about ``axis``."""
    a = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    t = np.radians(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    matrix: NDArray[np.float64] = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)
    return matrix


def oblique_coronal(degrees_x: float = 18.0, degrees_z: float = 12.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Coronal row/column directions tilted about L-R and then about S-I."""
    rot = rotation((0, 0, 1), degrees_z) @ rotation((1, 0, 0), degrees_x)
    row = rot @ np.array(CORONAL[0])
    col = rot @ np.array(CORONAL[1])
    return tuple(float(v) for v in row), tuple(float(v) for v in col)


@dataclass(frozen=True)
class Geometry:
    """A regular stack: origin (IPP of slice 0), row/column directions, spacings in mm."""

    origin: tuple[float, float, float]
    row_dir: tuple[float, ...]
    col_dir: tuple[float, ...]
    row_spacing: float  # PixelSpacing[0]: between rows, along col_dir
    col_spacing: float  # PixelSpacing[1]: between columns, along row_dir
    slice_gap: float

    @property
    def normal(self) -> NDArray[np.float64]:
        return np.cross(self.row_dir, self.col_dir)

    def slice_position(self, k: float) -> NDArray[np.float64]:
        return np.asarray(self.origin) + k * self.slice_gap * self.normal

    def lps(self, k: int, r: int, c: int) -> NDArray[np.float64]:
        """Centre of pixel (r, c) of slice k in LPS mm, by the DICOM formula."""
        return (
            self.slice_position(k)
            + c * self.col_spacing * np.asarray(self.row_dir)
            + r * self.row_spacing * np.asarray(self.col_dir)
        )


def centred_geometry(
    orientation: tuple[tuple[float, ...], tuple[float, ...]],
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float] = (1.5, 1.5, 4.0),
    centre: Sequence[float] = (0.0, -20.0, 30.0),
) -> Geometry:
    """A stack of ``shape`` (slices, rows, cols) centred on ``centre``."""
    row, col = (np.asarray(v, dtype=float) for v in orientation)
    normal = np.cross(row, col)
    n_slices, rows, cols = shape
    origin = (
        np.asarray(centre, dtype=float)
        - (cols - 1) / 2 * spacing[1] * row
        - (rows - 1) / 2 * spacing[0] * col
        - (n_slices - 1) / 2 * spacing[2] * normal
    )
    return Geometry(
        origin=(float(origin[0]), float(origin[1]), float(origin[2])),
        row_dir=tuple(float(v) for v in row),
        col_dir=tuple(float(v) for v in col),
        row_spacing=spacing[0],
        col_spacing=spacing[1],
        slice_gap=spacing[2],
    )


def marker_volume(shape: tuple[int, int, int], marker: tuple[int, int, int], value: int = 3000) -> NDArray[np.uint16]:
    """A dim textured volume with one bright voxel at ``marker`` (k, r, c)."""
    rng = np.random.default_rng(7)
    volume = rng.integers(50, 150, size=shape, dtype=np.uint16)
    volume[marker] = value
    return volume


def _uid(*parts: object) -> UID:
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=[str(p) for p in parts])


def _base(headers: dict[str, Any], series_uid: str, sop_class: str, sop_uid: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "MR"
    ds.Manufacturer = "SIEMENS"
    ds.PatientName = "Test^Loader"
    ds.PatientID = "IO-TEST"
    ds.StudyInstanceUID = _uid("study")
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = _uid("for")
    ds.SeriesNumber = 1
    ds.MagneticFieldStrength = 1.5
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "HIP"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    for keyword, value in headers.items():
        setattr(ds, keyword, value)
    return ds


def _save(ds: Dataset, path: Path, transfer_syntax: str, frames: NDArray[Any]) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(ExplicitVRLittleEndian)
    ds.file_meta = meta
    if frames.dtype == np.int16:
        ds.PixelRepresentation = 1
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    if UID(transfer_syntax) != ExplicitVRLittleEndian:
        if UID(transfer_syntax).is_compressed:
            ds.compress(transfer_syntax, frames, encoding_plugin="", generate_instance_uid=False)
        else:
            ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


@dataclass
class SeriesSpec:
    """What to write: a volume (k, r, c), its geometry and the series headers."""

    volume: NDArray[Any]
    geometry: Geometry
    headers: dict[str, Any] = field(default_factory=lambda: dict(STIR_COR))
    series_key: str = "series"
    part: str = ""  # distinguishes several writes into one series (folder and instance UIDs)
    transfer_syntax: str = ExplicitVRLittleEndian
    rescale: tuple[float, float] | None = None
    mutate: Callable[[int, Dataset], None] | None = None  # (slice k, dataset) before saving


def write_classic(folder: Path, spec: SeriesSpec) -> list[Path]:
    """One single-frame MR instance per slice, files and InstanceNumbers in scrambled order."""
    n_slices = spec.volume.shape[0]
    series_uid = _uid(spec.series_key)
    order = np.random.default_rng(len(spec.series_key)).permutation(n_slices)
    paths: list[Path] = []
    for instance, k in enumerate(order):
        k = int(k)
        ds = _base(spec.headers, series_uid, MRImageStorage, _uid(spec.series_key, spec.part, k))
        ds.InstanceNumber = instance + 1
        ds.ImagePositionPatient = [round(float(v), 4) for v in spec.geometry.slice_position(k)]
        ds.ImageOrientationPatient = [round(v, 6) for v in (*spec.geometry.row_dir, *spec.geometry.col_dir)]
        ds.PixelSpacing = [spec.geometry.row_spacing, spec.geometry.col_spacing]
        ds.SliceThickness = spec.geometry.slice_gap
        ds.SpacingBetweenSlices = spec.geometry.slice_gap
        ds.Rows, ds.Columns = spec.volume.shape[1:]
        if spec.rescale is not None:
            ds.RescaleSlope, ds.RescaleIntercept = spec.rescale
        frame = spec.volume[k]
        if spec.mutate is not None:
            spec.mutate(k, ds)
        path = folder / f"{spec.series_key}{spec.part}" / f"im{instance:03d}.dcm"
        _save(ds, path, spec.transfer_syntax, frame)
        paths.append(path)
    return paths


def _item(**attributes: Any) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def write_enhanced(folder: Path, spec: SeriesSpec) -> Path:
    """One Enhanced MR multi-frame instance, frames stored in scrambled slice order."""
    n_slices, rows, cols = spec.volume.shape
    series_uid = _uid(spec.series_key)
    headers = {k: v for k, v in spec.headers.items() if k not in _CLASSIC_ONLY}
    ds = _base(headers, series_uid, EnhancedMRImageStorage, _uid(spec.series_key, "mf"))
    ds.InstanceNumber = 1
    ds.NumberOfFrames = n_slices
    ds.Rows, ds.Columns = rows, cols
    ds.ImageType = ["ORIGINAL", "PRIMARY", "MIXED", "NONE"]
    inversion = "IR" in spec.headers.get("ScanningSequence", "")
    ti = spec.headers.get("InversionTime")
    modifier = _item(InversionRecovery="YES" if inversion else "NO")
    if inversion and ti is not None:
        modifier.InversionTimes = [float(ti)]
    slope, intercept = spec.rescale or (1.0, 0.0)
    shared = _item(
        PixelMeasuresSequence=DicomSequence([
            _item(PixelSpacing=[spec.geometry.row_spacing, spec.geometry.col_spacing],
                  SliceThickness=spec.geometry.slice_gap, SpacingBetweenSlices=spec.geometry.slice_gap)
        ]),
        PlaneOrientationSequence=DicomSequence([
            _item(ImageOrientationPatient=[round(v, 6) for v in (*spec.geometry.row_dir, *spec.geometry.col_dir)])
        ]),
        PixelValueTransformationSequence=DicomSequence([
            _item(RescaleSlope=slope, RescaleIntercept=intercept, RescaleType="US")
        ]),
        MRTimingAndRelatedParametersSequence=DicomSequence([
            _item(RepetitionTime=float(spec.headers["RepetitionTime"]), FlipAngle=90.0, EchoTrainLength=12)
        ]),
        MREchoSequence=DicomSequence([_item(EffectiveEchoTime=float(spec.headers["EchoTime"]))]),
        MRModifierSequence=DicomSequence([modifier]),
    )
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    order = np.random.default_rng(5).permutation(n_slices)
    per_frame = []
    for index, k in enumerate(order):
        per_frame.append(_item(
            PlanePositionSequence=DicomSequence([
                _item(ImagePositionPatient=[round(float(v), 4) for v in spec.geometry.slice_position(int(k))])
            ]),
            FrameContentSequence=DicomSequence([_item(InStackPositionNumber=index + 1, StackID="1")]),
            MRImageFrameTypeSequence=DicomSequence([
                _item(FrameType=["ORIGINAL", "PRIMARY", "MIXED", "NONE"],
                      AcquisitionContrast=spec.headers.get("AcquisitionContrast", "UNKNOWN"))
            ]),
        ))
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    if spec.mutate is not None:
        spec.mutate(0, ds)
    path = folder / spec.series_key / "multiframe.dcm"
    _save(ds, path, spec.transfer_syntax, spec.volume[order])
    return path


_CLASSIC_ONLY = frozenset({"RepetitionTime", "EchoTime", "InversionTime", "ScanningSequence",
                           "SequenceVariant", "ScanOptions", "ImageType"})


def encapsulated_series(folder: Path, key: str, transfer_syntax: str, fragments: Sequence[bytes],
                        geometry: Geometry, rows: int, cols: int, bits: int = 16,
                        signed: bool = False) -> list[Path]:
    """An MR series whose slices carry already-encoded pixel data (one fragment per slice)."""
    series_uid = _uid(key)
    paths = []
    for k, fragment in enumerate(fragments):
        ds = _base(T2_AX, series_uid, MRImageStorage, _uid(key, k))
        ds.BitsAllocated = 16 if bits > 8 else 8
        ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in geometry.slice_position(k)]
        ds.ImageOrientationPatient = [*geometry.row_dir, *geometry.col_dir]
        ds.PixelSpacing = [geometry.row_spacing, geometry.col_spacing]
        ds.Rows, ds.Columns = rows, cols
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = UID(transfer_syntax)
        ds.file_meta = meta
        ds.PixelData = encapsulate([fragment])
        ds["PixelData"].VR = "OB"
        path = folder / key / f"im{k:03d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
