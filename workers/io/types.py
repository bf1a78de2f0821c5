"""Types shared by loading, classification, analysis and the DICOM builders."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import SimpleITK as sitk
from pydicom.dataset import Dataset


class SeriesKind(StrEnum):
    """What a series is, from its headers."""

    T1 = "t1"
    STIR = "stir"
    T2_FS = "t2_fs"
    PD_FS = "pd_fs"
    T2 = "t2"
    PD = "pd"
    DIXON_WATER = "dixon_water"
    DIXON_FAT = "dixon_fat"
    DIXON_IN_PHASE = "dixon_in_phase"
    DIXON_OPPOSED_PHASE = "dixon_opposed_phase"
    FLAIR = "flair"
    DIFFUSION = "diffusion"
    ADC = "adc"
    LOCALIZER = "localizer"
    DERIVED = "derived"
    POST_CONTRAST = "post_contrast"
    UNKNOWN = "unknown"


class Plane(StrEnum):
    CORONAL = "coronal"
    AXIAL = "axial"
    SAGITTAL = "sagittal"
    OBLIQUE = "oblique"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Classification:
    """The kind and plane of a series, with the header evidence that decided it."""

    kind: SeriesKind
    plane: Plane
    evidence: tuple[str, ...] = ()
    fat_suppressed: bool = False


@dataclass(frozen=True)
class SliceRef:
    """The source of one slice of a volume: a single-frame instance, or a frame of a multi-frame one."""

    sop_class_uid: str
    sop_instance_uid: str
    frame_number: int | None = None  # 1-based, only for multi-frame sources


@dataclass(frozen=True)
class LoadedSeries:
    """One geometrically consistent stack of one series, as a SimpleITK volume in LPS.

    ``image`` is float32 with rescale applied; its z axis runs along the slice normal
    (sorted by position, never by InstanceNumber). ``slices[z]`` names the source of
    slice z and ``datasets`` holds the source headers (pixel data removed) in z order
    (one entry for a multi-frame source).
    """

    series_instance_uid: str
    image: sitk.Image
    slices: tuple[SliceRef, ...]
    datasets: tuple[Dataset, ...]
    classification: Classification
    series_number: int | None = None
    series_description: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)
