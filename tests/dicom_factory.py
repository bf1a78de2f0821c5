"""A tiny factory of small, synthetic, deterministic DICOM instances for listener tests.

No patient data: names and IDs are obviously synthetic. UIDs derive from a seed, so a test
gets the same study every run. Pixel data are small (default 32 x 32) ramps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

UID_ROOT = "1.2.826.0.1.3680043.8.498."


def uid(*parts: object) -> str:
    """A deterministic UID from ``parts``."""
    return str(generate_uid(prefix=UID_ROOT, entropy_srcs=[str(p) for p in parts]))


@dataclass(frozen=True)
class SeriesSpec:
    """One series of a synthetic study."""

    description: str
    count: int
    modality: str = "MR"
    body_part: str = "HIP"
    protocol: str = ""


HIP_SERIES = (
    SeriesSpec("COR T1 TSE", 4, protocol="hip_cor_t1"),
    SeriesSpec("COR STIR", 4, protocol="hip_cor_stir"),
    SeriesSpec("AX T2 FS", 3, protocol="hip_ax_t2fs"),
)


def _image(ds: Dataset, rows: int, cols: int, index: int, modality: str) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12 if modality == "MR" else 16
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0 if modality == "MR" else 1
    ramp = (np.arange(rows * cols, dtype=np.int64).reshape(rows, cols) * (index + 3)) % 4000
    ds.PixelData = ramp.astype(np.uint16 if modality == "MR" else np.int16).tobytes()


def instance(
    seed: str,
    series_index: int,
    index: int,
    spec: SeriesSpec,
    *,
    study_description: str = "MRI PELVIS HIPS",
    rows: int = 32,
    cols: int = 32,
) -> Dataset:
    """One classic single-frame image (MR Image or CT Image storage)."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage if spec.modality == "CT" else MRImageStorage
    ds.SOPInstanceUID = uid(seed, "sop", series_index, index)
    ds.StudyInstanceUID = uid(seed, "study")
    ds.SeriesInstanceUID = uid(seed, "series", series_index)
    ds.FrameOfReferenceUID = uid(seed, "for")
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "SYNTH-0001"
    ds.PatientSex = "O"
    ds.PatientBirthDate = "19700101"
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = "ACC-SYNTH"
    ds.StudyDescription = study_description
    ds.Modality = spec.modality
    ds.SeriesNumber = series_index + 1
    ds.SeriesDescription = spec.description
    if spec.protocol:
        ds.ProtocolName = spec.protocol
    if spec.body_part:
        ds.BodyPartExamined = spec.body_part
    ds.InstanceNumber = index + 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.ImagePositionPatient = [-100.0, 0.0 + 4.0 * index, 100.0]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 4.0
    _image(ds, rows, cols, index, spec.modality)
    return ds


def study(
    seed: str,
    series: tuple[SeriesSpec, ...] = HIP_SERIES,
    *,
    study_description: str = "MRI PELVIS HIPS",
    rows: int = 32,
    cols: int = 32,
) -> list[Dataset]:
    """All instances of a multi-series study."""
    return [
        instance(seed, s, i, spec, study_description=study_description, rows=rows, cols=cols)
        for s, spec in enumerate(series)
        for i in range(spec.count)
    ]


def knee_mr(seed: str) -> list[Dataset]:
    """An MR knee study (not routed)."""
    return study(seed, (SeriesSpec("SAG PD FS", 3, body_part="KNEE"), SeriesSpec("COR T1", 2, body_part="KNEE")),
                 study_description="MRI KNEE RIGHT")


def brain_mr(seed: str) -> list[Dataset]:
    """An MR brain study without BodyPartExamined (not routed)."""
    return study(seed, (SeriesSpec("AX FLAIR", 3, body_part=""),), study_description="MRI HEAD")


def pelvis_ct(seed: str) -> list[Dataset]:
    """A CT of the pelvis (hip words, but not MR: not routed)."""
    return study(seed, (SeriesSpec("AX PELVIS 2mm", 3, modality="CT", body_part="PELVIS"),),
                 study_description="CT PELVIS")


def enhanced_mr(seed: str, frames: int = 3, rows: int = 32, cols: int = 32) -> Dataset:
    """A small multi-frame Enhanced MR Image of the hips."""
    ds = Dataset()
    ds.SOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = uid(seed, "enh-sop")
    ds.StudyInstanceUID = uid(seed, "study")
    ds.SeriesInstanceUID = uid(seed, "enh-series")
    ds.FrameOfReferenceUID = uid(seed, "for")
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "SYNTH-0001"
    ds.StudyDescription = "MRI HIPS"
    ds.Modality = "MR"
    ds.SeriesNumber = 10
    ds.SeriesDescription = "COR STIR enhanced"
    ds.BodyPartExamined = "HIP"
    ds.InstanceNumber = 1
    ds.NumberOfFrames = frames
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [1.0, 1.0]
    measures.SliceThickness = 4.0
    shared.PixelMeasuresSequence = Sequence([measures])
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    shared.PlaneOrientationSequence = Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for f in range(frames):
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [-100.0, 4.0 * f, 100.0]
        item.PlanePositionSequence = Sequence([position])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = (np.arange(frames * rows * cols, dtype=np.uint16) % 4000).tobytes()
    return ds


def compressed(ds: Dataset) -> Dataset:
    """The same instance encoded RLE Lossless (a compressed transfer syntax)."""
    out = ds.copy()
    out.file_meta = FileMetaDataset()
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out.compress(RLELossless, encoding_plugin="pydicom")
    return out


def write(datasets: list[Dataset], folder: Path, transfer_syntax: UID | None = None) -> list[Path]:
    """Write Part-10 files (``<n>.dcm``) into ``folder``; return their paths in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, ds in enumerate(datasets):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = transfer_syntax or getattr(ds, "file_meta", {}).get(
            "TransferSyntaxUID", ExplicitVRLittleEndian
        )
        ds.file_meta = meta
        path = folder / f"{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def dataset_bytes(path: Path) -> bytes:
    """The encoded data set of a Part-10 file (everything after the file meta information)."""
    raw = path.read_bytes()
    if raw[128:132] != b"DICM":
        raise ValueError(f"{path} is not a Part-10 file")
    group_length = int.from_bytes(raw[140:144], "little")  # (0002,0000) UL, explicit VR LE
    return raw[144 + group_length:]


def sop_uid_of(path: Path) -> str:
    """SOP Instance UID of a file."""
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
