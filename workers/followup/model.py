"""The comparison part of ``result.json``: the prior study it refers to and the change per side.

Pure data (pydantic), imported by ``workers.analysis.result``; it must not import the
analysis result itself. Every number is copied from, or computed by ``compare.py`` from,
the two analysis results; a value that could not be computed is ``None``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ComparisonStatus = Literal["resolved", "improved", "stable", "worse", "new", "no_oedema", "not_compared"]
ComparedSide = Literal["left", "right"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PriorStudyRef(_Model):
    """The prior study the comparison refers to (DICOM DA/TM strings; "" when unknown)."""

    study_instance_uid: str
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    job_id: str = Field("", description="MarrowMap job that analysed the prior study, when known.")


class SideComparison(_Model):
    """One hip then (prior) and now (current).

    ``status`` is ``not_compared`` (with ``reason``) when the side was not localised, or its
    oedema not assessed, in either study; then every number is None.
    """

    side: ComparedSide
    status: ComparisonStatus
    reason: str = ""
    present_prior: bool | None = None
    present_current: bool | None = None
    volume_ml_prior: float | None = None
    volume_ml_current: float | None = None
    change_ml: float | None = Field(None, description="current - prior oedema volume.")
    change_pct: float | None = Field(None, description="change_ml / prior volume x 100; None when prior is 0.")
    head_pct_prior: float | None = None
    head_pct_current: float | None = None
    neck_pct_prior: float | None = None
    neck_pct_current: float | None = None
    effusion_prior: bool | None = None
    effusion_current: bool | None = None
    effusion_ml_prior: float | None = None
    effusion_ml_current: float | None = None


class Comparison(_Model):
    """The follow-up comparison of a study with the patient's prior analysed study."""

    prior: PriorStudyRef
    sides: dict[ComparedSide, SideComparison] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict, description="The status thresholds used.")
