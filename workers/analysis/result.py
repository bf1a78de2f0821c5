"""The analysis result: what ``result.json`` holds and what the DICOM builders read.

Every number here was computed by the analysis; a value the analysis could not compute
is ``None`` (never a guess). Volumes in mL (= cm3), percentages 0-100, signal ratios
relative to the recorded reference marrow.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from workers.followup.model import Comparison

RESULT_SCHEMA_VERSION: Literal[1] = 1

Status = Literal["analyzed", "not_applicable", "failed"]
Side = Literal["left", "right"]
Pattern = Literal["diffuse", "focal", "regional", "none"]
RegionName = Literal["head", "neck", "intertrochanteric"]

#: Label values of the region map written next to result.json (fluid-sensitive geometry).
REGION_LABELS: dict[tuple[Side, RegionName], int] = {
    ("right", "head"): 1,
    ("right", "neck"): 2,
    ("right", "intertrochanteric"): 3,
    ("left", "head"): 4,
    ("left", "neck"): 5,
    ("left", "intertrochanteric"): 6,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegionMeasurement(_Model):
    """Oedema in one anatomical region of one hip."""

    region_volume_ml: float = Field(ge=0, description="Volume of the region (bone, eroded).")
    oedema_volume_ml: float = Field(ge=0)
    involvement_pct: float = Field(ge=0, le=100)
    mean_signal_ratio: float | None = Field(None, description="Mean fluid-sensitive SI / reference, oedema voxels.")
    p95_signal_ratio: float | None = None
    mean_t1_ratio: float | None = Field(None, description="Mean T1 SI / reference fatty marrow, oedema voxels.")


class SideResult(_Model):
    """One hip. When ``localized`` is False every measurement is None and ``reason`` says why."""

    side: Side
    localized: bool
    imaged: bool = Field(True, description="False: the hip lies outside the field of view (never 'normal').")
    reason: str = ""
    head_centre_lps_mm: tuple[float, float, float] | None = None
    head_radius_mm: float | None = None
    present: bool | None = None
    oedema_volume_ml: float | None = None
    oedema_volume_range_ml: tuple[float, float] | None = Field(
        None, description="Interval the volume lies in when slices leave gaps (interpolated across them).")
    coverage_pct: dict[RegionName, float] | None = Field(
        None, description="% of each region inside the fluid-sensitive series' volume (< 95: incomplete coverage).")
    head_involvement_pct: float | None = None
    neck_involvement_pct: float | None = None
    intertrochanteric_involvement_pct: float | None = None
    regions: dict[RegionName, RegionMeasurement] = Field(default_factory=dict)
    mean_signal_ratio: float | None = None
    p95_signal_ratio: float | None = None
    mean_t1_ratio: float | None = None
    pattern: Pattern | None = None
    subchondral_low_signal_band: bool | None = None
    medial_head_sparing: bool | None = None
    effusion: bool | None = None
    effusion_volume_ml: float | None = None
    effusion_thickness_mm: float | None = Field(None, description="Thickest joint-fluid layer (capsule distension).")
    fat_suppression_ratio: float | None = Field(
        None, description="Fat / muscle signal on the fluid-sensitive series around this hip (< 1: suppression works).")
    reference: str | None = Field(None, description="Which marrow served as the reference, e.g. 'contralateral head'.")
    largest_slice_index: int | None = Field(
        None, description="Slice (z index of the fluid-sensitive volume) where this side's oedema is largest."
    )


class SeriesUsed(_Model):
    fluid_sensitive: str | None = None
    t1: str | None = None


class SeriesReport(_Model):
    """How one input series was classified, with the evidence."""

    series_instance_uid: str
    series_number: int | None = None
    series_description: str = ""
    kind: str
    plane: str
    evidence: list[str] = Field(default_factory=list)
    usable: bool = True
    problem: str = ""


class Quality(_Model):
    statement: str = ""
    warnings: list[str] = Field(default_factory=list)
    fat_suppression_ok: bool | None = None
    confidence: Literal["normal", "reduced", "withheld"] = "normal"


class OutputFile(_Model):
    kind: Literal["seg", "sr", "sc_overlay", "sc_summary", "pmap", "kos"]
    path: str
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str


class Algorithm(_Model):
    name: str = "MarrowMap BME map"
    version: str
    parameters: dict[str, str] = Field(default_factory=dict)


class AnalysisResult(_Model):
    """The whole result of one study's analysis."""

    schema_version: Literal[1] = RESULT_SCHEMA_VERSION
    status: Status
    reason: str = ""
    study_instance_uid: str | None = None
    study_date: str = Field("", description="StudyDate (DA) of the source study, for follow-up comparison.")
    study_time: str = Field("", description="StudyTime (TM) of the source study.")
    accession_number: str = ""
    series_used: SeriesUsed = Field(default_factory=SeriesUsed)
    series: list[SeriesReport] = Field(default_factory=list)
    sides: dict[Side, SideResult] = Field(default_factory=dict)
    quality: Quality = Field(default_factory=Quality)
    algorithm: Algorithm
    timings_s: dict[str, float] = Field(default_factory=dict)
    findings_text: str = ""
    outputs: list[OutputFile] = Field(default_factory=list)
    comparison: Comparison | None = Field(None, description="Change since the patient's prior analysed study.")
