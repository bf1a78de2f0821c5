"""Load one study folder into SimpleITK volumes with exact LPS geometry.

Files are read once (``defer_size``: pixel data stays on disk until a stack is decoded),
grouped by SeriesInstanceUID and, within a series, into geometrically consistent stacks
(same orientation, echo and image type). Each stack is sorted along the slice normal
n = row x col by the projection of ImagePositionPatient on n (never by InstanceNumber)
and becomes one :class:`LoadedSeries`:

- origin = IPP of the first sorted slice;
- direction columns = row direction (IOP[:3]), column direction (IOP[3:]), n;
- spacing = (PixelSpacing[1], PixelSpacing[0], slice spacing measured from positions).

A problem in one series (or stack) becomes a :class:`SeriesProblem` with a typed error
and never stops the others.
"""

from __future__ import annotations

import os
import struct
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID, EnhancedMRImageStorage, ExplicitVRBigEndian, MRImageStorage

from marrowmap.logs import get_logger
from workers.io.classify import classify_series, plane_from_orientation
from workers.io.errors import (
    InconsistentGeometryError,
    MismatchedSizeError,
    MissingGeometryError,
    NoMRImagesError,
    NonUniformSpacingError,
    NotAnImageError,
    NotMRError,
    PixelDataError,
    SeriesLoadError,
    SingleSliceError,
    UnsupportedTransferSyntaxError,
)
from workers.io.headers import floats, frame_value, number, same_orientation, tokens
from workers.io.types import Classification, LoadedSeries, SeriesKind, SliceRef

log = get_logger(__name__)

MR_IMAGE_SOP_CLASSES = frozenset({MRImageStorage, EnhancedMRImageStorage})
SPACING_JITTER = 0.10  # tolerated relative deviation of one slice gap from the typical gap
DUPLICATE_MM = 0.01  # two slices closer than this along n are at the same position
_DEFER_BYTES = 2048  # larger values (pixel data, private blobs) are read only when needed
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
# Non-image storage classes: SR family, presentation states, raw data/registration/SEG,
# encapsulated documents, RT objects, waveforms.
_NON_IMAGE_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",
    "1.2.840.10008.5.1.4.1.1.11.",
    "1.2.840.10008.5.1.4.1.1.66",
    "1.2.840.10008.5.1.4.1.1.104.",
    "1.2.840.10008.5.1.4.1.1.481.",
    "1.2.840.10008.5.1.4.1.1.9.",
)
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_SMALL_LOCALIZER_STACK = 5


@dataclass(frozen=True)
class SeriesProblem:
    """Why one series (or one stack of it) was not loaded."""

    series_instance_uid: str
    series_description: str
    error: SeriesLoadError
    series_number: int | None = None

    @property
    def reason(self) -> str:
        return self.error.reason

    @property
    def kind(self) -> str:
        return self.error.kind


@dataclass(frozen=True)
class SkippedFile:
    """A file in the folder that is not a DICOM instance we can use, and why."""

    path: Path
    reason: str


@dataclass
class StudyLoad:
    """The outcome of loading one study folder: volumes, per-series problems, skipped files."""

    loaded: list[LoadedSeries] = field(default_factory=list)
    problems: list[SeriesProblem] = field(default_factory=list)
    skipped_files: list[SkippedFile] = field(default_factory=list)


@dataclass
class _Slice:
    """One 2-D image: a single-frame instance or one frame of a multi-frame instance."""

    ds: Dataset
    frame_index: int | None  # 0-based; None for single-frame sources
    position: NDArray[np.float64]
    orientation: tuple[float, ...]
    row_spacing: float
    col_spacing: float
    rows: int
    cols: int
    slope: float
    intercept: float
    contrast_key: tuple[object, ...]

    @property
    def ref(self) -> SliceRef:
        frame = None if self.frame_index is None else self.frame_index + 1
        return SliceRef(str(self.ds.SOPClassUID), str(self.ds.SOPInstanceUID), frame)


# ---------------------------------------------------------------- reading


def _iter_files(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            yield Path(root) / name


def _read(path: Path) -> Dataset | str:
    """The dataset (pixel data deferred), or the reason the file is skipped."""
    try:
        ds = dcmread(path, defer_size=_DEFER_BYTES)
    except InvalidDicomError:
        return "not a DICOM Part 10 file (no 'DICM' prefix)"
    except (OSError, EOFError, ValueError, KeyError, struct.error) as exc:
        return f"unreadable DICOM file: {exc}"
    if str(ds.get("SOPClassUID", "")) == _MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
        return "DICOMDIR (media storage directory), not an instance"
    if not ds.get("SeriesInstanceUID") or not ds.get("SOPInstanceUID"):
        return "DICOM file without SeriesInstanceUID or SOPInstanceUID"
    return ds


# ---------------------------------------------------------------- slices


def _contrast_key(ds: Dataset, frame: int | None) -> tuple[object, ...]:
    if frame is None:
        echo = number(ds.get("EchoTime"))
        image_type = tokens(ds.get("ImageType"))
    else:
        echo = number(frame_value(ds, frame, "MREchoSequence", "EffectiveEchoTime"))
        image_type = tokens(frame_value(ds, frame, "MRImageFrameTypeSequence", "FrameType"))
    return (None if echo is None else round(echo, 2), image_type)


def _make_slice(ds: Dataset, frame: int | None) -> _Slice | str:
    """The geometry of one image, or what is missing."""
    ipp = floats(frame_value(ds, frame, "PlanePositionSequence", "ImagePositionPatient"), 3)
    iop = floats(frame_value(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
    spacing = floats(frame_value(ds, frame, "PixelMeasuresSequence", "PixelSpacing"), 2)
    missing = [
        name
        for name, value in (
            ("ImagePositionPatient", ipp),
            ("ImageOrientationPatient", iop),
            ("PixelSpacing", spacing),
        )
        if value is None
    ]
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows <= 0 or cols <= 0:
        missing.append("Rows/Columns")
    if missing or ipp is None or iop is None or spacing is None:
        return "missing or invalid " + ", ".join(missing)
    row_dir, col_dir = np.array(iop[:3]), np.array(iop[3:])
    if (
        abs(np.linalg.norm(row_dir) - 1) > 0.01
        or abs(np.linalg.norm(col_dir) - 1) > 0.01
        or abs(float(row_dir @ col_dir)) > 0.01
    ):
        return f"ImageOrientationPatient {iop} is not two orthogonal unit vectors"
    if spacing[0] <= 0 or spacing[1] <= 0:
        return f"PixelSpacing {spacing} is not positive"
    slope = number(frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = number(frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept"))
    return _Slice(
        ds=ds,
        frame_index=frame,
        position=np.array(ipp, dtype=np.float64),
        orientation=iop,
        row_spacing=spacing[0],
        col_spacing=spacing[1],
        rows=rows,
        cols=cols,
        slope=1.0 if slope is None or slope == 0 else slope,
        intercept=0.0 if intercept is None else intercept,
        contrast_key=_contrast_key(ds, frame),
    )


def _slices_of(ds: Dataset) -> list[_Slice | str]:
    if str(ds.SOPClassUID) == EnhancedMRImageStorage or "PerFrameFunctionalGroupsSequence" in ds:
        n_frames = int(number(ds.get("NumberOfFrames")) or 1)
        if "PerFrameFunctionalGroupsSequence" not in ds and "SharedFunctionalGroupsSequence" not in ds:
            return [
                "Enhanced MR without functional groups (no PlanePositionSequence/"
                "PlaneOrientationSequence/PixelMeasuresSequence)"
            ]
        return [_make_slice(ds, index) for index in range(n_frames)]
    return [_make_slice(ds, None)]


def _stacks(slices: list[_Slice]) -> list[list[_Slice]]:
    """Split into stacks of one orientation and one contrast (echo time, image type)."""
    groups: list[list[_Slice]] = []
    for item in slices:
        for group in groups:
            head = group[0]
            if same_orientation(head.orientation, item.orientation) and head.contrast_key == item.contrast_key:
                group.append(item)
                break
        else:
            groups.append([item])
    return groups


# ---------------------------------------------------------------- checks


def _check_sizes(stack: list[_Slice]) -> None:
    sizes = Counter((s.rows, s.cols) for s in stack)
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c} ({n} slices)" for (r, c), n in sizes.most_common())
        raise MismatchedSizeError(f"slices of one stack differ in matrix size (Rows x Columns): {listed}")
    spacings = Counter((round(s.row_spacing, 4), round(s.col_spacing, 4)) for s in stack)
    if len(spacings) > 1:
        listed = ", ".join(f"{r:g} x {c:g} mm ({n} slices)" for (r, c), n in spacings.most_common())
        raise MismatchedSizeError(f"slices of one stack differ in PixelSpacing: {listed}")


def _sorted_positions(stack: list[_Slice], normal: NDArray[np.float64]) -> tuple[list[_Slice], NDArray[np.float64]]:
    distances = np.array([float(s.position @ normal) for s in stack])
    order = np.argsort(distances, kind="stable")
    return [stack[i] for i in order], distances[order]


def _check_spacing(distances: NDArray[np.float64]) -> tuple[float, list[str]]:
    """The slice spacing along n, or NonUniformSpacingError; plus tolerated-jitter warnings."""
    gaps = np.diff(distances)
    duplicates = [i for i, gap in enumerate(gaps) if gap < DUPLICATE_MM]
    if duplicates:
        examples = ", ".join(
            f"slices {i + 1} and {i + 2} at {distances[i]:.2f} mm" for i in duplicates[:3]
        )
        raise NonUniformSpacingError(
            f"{len(duplicates)} duplicate slice position(s) along the slice normal ({examples}); "
            "repeated acquisitions or several volumes in one series"
        )
    median = float(np.median(gaps))
    typical = float(np.mean(gaps[np.abs(gaps - median) <= 0.25 * median]))
    deviating = [i for i, gap in enumerate(gaps) if abs(gap - typical) > SPACING_JITTER * typical]
    if deviating:
        examples = ", ".join(
            f"{'gap' if gaps[i] > typical else 'step'} of {gaps[i]:.2f} mm between slices {i + 1} and {i + 2}"
            for i in deviating[:3]
        )
        raise NonUniformSpacingError(
            f"slice spacing not uniform: {examples} (typical {typical:.2f} mm, "
            f"tolerance {SPACING_JITTER:.0%})"
        )
    spacing = float((distances[-1] - distances[0]) / (len(distances) - 1))
    jitter = float(np.max(np.abs(gaps - spacing)) / spacing)
    warnings = [f"slice spacing jitter up to {jitter:.1%} tolerated"] if jitter > 0.01 else []
    return spacing, warnings


def _check_alignment(stack: list[_Slice], normal: NDArray[np.float64]) -> None:
    """Slice origins must lie on a line along n, else the stack is not a regular grid."""
    offsets = np.array([s.position - stack[0].position for s in stack])
    in_plane = offsets - np.outer(offsets @ normal, normal)
    drift = float(np.max(np.linalg.norm(in_plane, axis=1)))
    limit = 0.5 * min(stack[0].row_spacing, stack[0].col_spacing)
    if drift > limit:
        raise InconsistentGeometryError(
            f"slice positions drift {drift:.2f} mm within the slice plane (sheared or tilted stack); "
            f"they are not a regular grid along the slice normal (tolerance {limit:.2f} mm)"
        )


# ---------------------------------------------------------------- pixels


def _check_transfer_syntax(ds: Dataset) -> None:
    uid = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise UnsupportedTransferSyntaxError(
            f"transfer syntax {uid.name} ({uid}) has no pixel data decoder"
        ) from exc
    if not decoder.is_available:
        raise UnsupportedTransferSyntaxError(
            f"transfer syntax {uid.name} ({uid}): no decoder plugin installed"
        )


def _decode_native(ds: Dataset, expected: tuple[int, int, int]) -> NDArray[np.generic] | None:
    """Fast path for uncompressed 8/16/32-bit grey pixel data; None when pydicom must decode."""
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if syntax.is_compressed or "PixelData" not in ds or bits not in (8, 16, 32):
        return None
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    order = ">" if syntax == ExplicitVRBigEndian else "<"
    dtype = np.dtype(f"{order}{'i' if signed else 'u'}{bits // 8}")
    data: bytes = ds.PixelData
    count = int(np.prod(expected))
    if len(data) < count * dtype.itemsize:
        raise PixelDataError(
            f"instance {ds.SOPInstanceUID}: pixel data has {len(data)} bytes, "
            f"{count * dtype.itemsize} expected for {expected[0]}x{expected[1]}x{expected[2]} "
            f"at {bits} bits (truncated?)"
        )
    array = np.frombuffer(data, dtype=dtype, count=count).reshape(expected)
    stored = int(ds.get("BitsStored", bits) or bits)
    if stored < bits:
        shift = bits - stored
        array = (array << shift) >> shift if signed else array & ((1 << stored) - 1)
    return array


def _decode(ds: Dataset) -> NDArray[np.generic]:
    """All frames of one instance as an array (frames, rows, cols)."""
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise PixelDataError(f"instance {ds.SOPInstanceUID} has no pixel data (truncated file?)")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise PixelDataError(
            f"instance {ds.SOPInstanceUID} has {ds.SamplesPerPixel} samples per pixel "
            f"({ds.get('PhotometricInterpretation')}); an MR magnitude image has one"
        )
    n_frames = int(number(ds.get("NumberOfFrames")) or 1)
    expected = (n_frames, int(ds.Rows), int(ds.Columns))
    try:
        native = _decode_native(ds, expected)
        array: NDArray[np.generic] = ds.pixel_array if native is None else native
    except (ValueError, AttributeError, RuntimeError, OSError, EOFError, struct.error) as exc:
        raise PixelDataError(
            f"pixel data of instance {ds.SOPInstanceUID} cannot be decoded "
            f"({UID(str(ds.file_meta.TransferSyntaxUID)).name}): {exc}"
        ) from exc
    if array.size != np.prod(expected):
        raise PixelDataError(
            f"instance {ds.SOPInstanceUID}: decoded {array.shape}, expected {expected} (truncated?)"
        )
    return array.reshape(expected)


def _strip_pixels(ds: Dataset) -> None:
    """Drop pixel data and load every other deferred value, so headers outlive the files."""
    for keyword in _PIXEL_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    # Iterating reads deferred (top-level) values without converting the rest; nothing else to do.
    deque(ds.elements(), maxlen=0)


def _volume(stack: list[_Slice]) -> NDArray[np.float32]:
    rows, cols = stack[0].rows, stack[0].cols
    volume = np.empty((len(stack), rows, cols), dtype=np.float32)
    decoded: dict[str, NDArray[np.generic]] = {}
    for z, item in enumerate(stack):
        uid = str(item.ds.SOPInstanceUID)
        if uid not in decoded:
            decoded[uid] = _decode(item.ds)
        frames = decoded[uid]
        np.copyto(volume[z], frames[item.frame_index or 0], casting="unsafe")
        if item.slope != 1.0:
            volume[z] *= np.float32(item.slope)
        if item.intercept != 0.0:
            volume[z] += np.float32(item.intercept)
        if item.frame_index is None:
            del decoded[uid]
    return volume


# ---------------------------------------------------------------- assembly


def _series_text(ds: Dataset) -> tuple[str, int | None]:
    series_number = number(ds.get("SeriesNumber"))
    description = str(ds.get("SeriesDescription", "") or "")
    return description, None if series_number is None else int(series_number)


def _warnings_for(stack: list[_Slice]) -> list[str]:
    ds = stack[0].ds
    notes: list[str] = []
    if (0x2005, 0x100E) in ds or (0x2005, 0x110E) in ds:
        notes.append(
            "Philips private scale slope (2005,100E) present: values are display values "
            "(RescaleSlope/Intercept applied), not Philips floating-point values"
        )
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        notes.append("MONOCHROME1: stored values kept (low value displayed bright)")
    return notes


def _set_geometry(
    image: Any, origin: tuple[float, ...], spacing: tuple[float, ...], direction: tuple[float, ...]
) -> None:
    """Origin, spacing and direction (row-major 3x3, columns = axis directions) in LPS."""
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)


def _build(stack: list[_Slice], uid: str, cls: Classification, notes: list[str]) -> LoadedSeries:
    """One stack -> LoadedSeries, or a SeriesLoadError explaining why not."""
    if len(stack) < 2:
        raise SingleSliceError("only 1 slice: a volume analysis needs at least 2 parallel slices")
    _check_sizes(stack)
    first = stack[0]
    row_dir, col_dir = np.array(first.orientation[:3]), np.array(first.orientation[3:])
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    ordered, distances = _sorted_positions(stack, normal)
    spacing_z, warnings = _check_spacing(distances)
    _check_alignment(ordered, normal)
    header_gap = number(first.ds.get("SpacingBetweenSlices"))
    if header_gap is not None and header_gap > 0 and abs(header_gap - spacing_z) > 0.1 * spacing_z:
        warnings.append(
            f"SpacingBetweenSlices={header_gap:g} mm but positions give {spacing_z:.3f} mm (positions used)"
        )
    volume = _volume(ordered)
    image = sitk.GetImageFromArray(volume)
    del volume
    _set_geometry(
        image,
        origin=tuple(float(v) for v in ordered[0].position),
        spacing=(first.col_spacing, first.row_spacing, spacing_z),
        direction=tuple(float(v) for v in np.column_stack([row_dir, col_dir, normal]).ravel()),
    )
    datasets: list[Dataset] = []
    seen: set[int] = set()
    for item in ordered:
        if id(item.ds) not in seen:
            seen.add(id(item.ds))
            datasets.append(item.ds)
    description, series_number = _series_text(first.ds)
    return LoadedSeries(
        series_instance_uid=uid,
        image=image,
        slices=tuple(item.ref for item in ordered),
        datasets=tuple(datasets),
        classification=cls,
        series_number=series_number,
        series_description=description,
        warnings=tuple(notes + warnings + _warnings_for(ordered)),
    )


def _stack_label(stack: list[_Slice], index: int, total: int) -> str:
    plane, _, _ = plane_from_orientation(stack[0].orientation)
    return f"stack {index + 1}/{total} ({plane}, {len(stack)} slice{'s' if len(stack) != 1 else ''}): "


def _classify_stack(stack: list[_Slice], n_orientations: int) -> Classification:
    datasets = list({id(s.ds): s.ds for s in stack}.values())
    cls = classify_series(datasets, orientation=stack[0].orientation)
    if n_orientations > 1 and cls.kind is not SeriesKind.LOCALIZER and len(stack) <= _SMALL_LOCALIZER_STACK:
        return Classification(
            SeriesKind.LOCALIZER,
            cls.plane,
            (f"series holds {n_orientations} orientations with small stacks", *cls.evidence),
            cls.fat_suppressed,
        )
    return cls


def _load_mr_series(uid: str, datasets: list[Dataset], study: StudyLoad) -> None:
    description, series_number = _series_text(datasets[0])

    def problem(error: SeriesLoadError) -> None:
        study.problems.append(SeriesProblem(uid, description, error, series_number))
        log.info("series_not_loaded", series_uid=uid, kind=error.kind, reason=error.reason)

    try:
        for ds in datasets:
            _check_transfer_syntax(ds)
        results = [r for ds in datasets for r in _slices_of(ds)]
        missing = [r for r in results if isinstance(r, str)]
        if missing:
            counts = Counter(missing)
            listed = "; ".join(f"{reason} ({n} of {len(results)} images)" for reason, n in counts.items())
            raise MissingGeometryError(f"no usable geometry: {listed}")
    except SeriesLoadError as error:
        problem(error)
        return
    slices = [r for r in results if isinstance(r, _Slice)]
    stacks = _stacks(slices)
    orientations: list[tuple[float, ...]] = []
    for stack in stacks:
        if not any(same_orientation(stack[0].orientation, o) for o in orientations):
            orientations.append(stack[0].orientation)
    notes = [f"series split into {len(stacks)} stacks by orientation/echo/image type"] if len(stacks) > 1 else []
    for index, stack in enumerate(stacks):
        label = _stack_label(stack, index, len(stacks)) if len(stacks) > 1 else ""
        try:
            cls = _classify_stack(stack, len(orientations))
            study.loaded.append(_build(stack, uid, cls, notes))
        except SeriesLoadError as error:
            problem(type(error)(label + error.reason))
    for ds in datasets:  # after every stack: one multi-frame instance may feed several
        _strip_pixels(ds)


def _unusable_reason(ds: Dataset) -> SeriesLoadError | None:
    sop = UID(str(ds.get("SOPClassUID", "")))
    if sop in MR_IMAGE_SOP_CLASSES:
        return None
    modality = str(ds.get("Modality", "") or "?")
    if str(sop).startswith(_NON_IMAGE_PREFIXES) or not any(k in ds for k in _PIXEL_KEYWORDS):
        return NotAnImageError(f"{sop.name} (modality {modality}) is not an image volume; skipped")
    return NotMRError(
        f"not MR: {sop.name} (modality {modality}); only MR Image and Enhanced MR Image storage are loaded"
    )


def load_study(folder: Path) -> StudyLoad:
    """Load every MR series under ``folder`` (recursively) as LPS volumes; explain the rest."""
    study = StudyLoad()
    series: dict[str, list[Dataset]] = {}
    first_path: dict[str, Path] = {}
    for path in _iter_files(Path(folder)):
        result = _read(path)
        if isinstance(result, str):
            study.skipped_files.append(SkippedFile(path, result))
            continue
        sop_uid = str(result.get("SOPInstanceUID", ""))
        if sop_uid in first_path:
            reason = f"duplicate of SOPInstanceUID {sop_uid} already read from {first_path[sop_uid]}"
            study.skipped_files.append(SkippedFile(path, reason))
            continue
        first_path[sop_uid] = path
        series.setdefault(str(result.SeriesInstanceUID), []).append(result)
    any_mr = False
    for uid, datasets in series.items():
        mr: list[Dataset] = []
        others: dict[str, tuple[SeriesLoadError, Dataset]] = {}  # one problem per reason
        for ds in datasets:
            error = _unusable_reason(ds)
            if error is None:
                mr.append(ds)
            else:
                others.setdefault(error.reason, (error, ds))
        for error, ds in others.values():
            description, series_number = _series_text(ds)
            study.problems.append(SeriesProblem(uid, description, error, series_number))
        if mr:
            any_mr = True
            _load_mr_series(uid, mr, study)
    if not any_mr:
        found = Counter(p.kind for p in study.problems)
        listed = ", ".join(f"{n} {kind.replace('_', ' ')} series" for kind, n in found.items())
        skipped = f"{len(study.skipped_files)} non-DICOM/unusable files" if study.skipped_files else ""
        detail = "; ".join(x for x in (listed, skipped) if x) or "empty folder"
        study.problems.append(
            SeriesProblem("", "(study)", NoMRImagesError(f"no MR images in the study ({detail})"))
        )
    study.loaded.sort(key=lambda s: (s.series_number is None, s.series_number or 0, s.series_instance_uid))
    log.info(
        "study_loaded",
        series_loaded=len(study.loaded),
        problems=len(study.problems),
        skipped_files=len(study.skipped_files),
    )
    return study


__all__ = ["SeriesProblem", "SkippedFile", "StudyLoad", "load_study"]
