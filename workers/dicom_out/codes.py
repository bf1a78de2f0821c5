"""Every coded concept MarrowMap writes, in one place to review.

Each function returns a *fresh* ``CodedConcept``: highdicom stores the object it is
given, so a concept shared between a SEG segment and an SR finding site would carry
modifiers added for one into the other (DOMAIN.md 4.3 pitfall 2).

Standard codes come from pydicom's PS3.16 dictionary. Concepts with no standard code
(intertrochanteric region, % involvement, signal ratios, oedema pattern, the draft
findings text) use the local scheme ``99MARROWMAP``, declared in every SR's Coding
Scheme Identification Sequence.
"""

from __future__ import annotations

from typing import Literal

import highdicom as hd
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from workers.analysis.result import Pattern, RegionName, Side

LOCAL_SCHEME = "99MARROWMAP"
LOCAL_SCHEME_NAME = "MarrowMap local codes"
LOCAL_SCHEME_ORG = "MarrowMap"


def _fresh(code: Code) -> CodedConcept:
    return CodedConcept(code.value, code.scheme_designator, code.meaning)


def _local(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, LOCAL_SCHEME, meaning)


def coding_scheme_item() -> hd.coding_schemes.CodingSchemeIdentificationItem:
    """Declaration of the local scheme for the Coding Scheme Identification Sequence."""
    return hd.coding_schemes.CodingSchemeIdentificationItem(
        designator=LOCAL_SCHEME, name=LOCAL_SCHEME_NAME, responsible_organization=LOCAL_SCHEME_ORG
    )


# --- findings and categories -----------------------------------------------------------------
def edema() -> CodedConcept:
    """SCT 79654002 Edema (bone-marrow oedema, with finding site bone marrow / femur region)."""
    return _fresh(codes.SCT.Edema)


def abnormal_structure() -> CodedConcept:
    return _fresh(codes.SCT.MorphologicallyAbnormalStructure)


def anatomical_structure() -> CodedConcept:
    return _fresh(codes.SCT.AnatomicalStructure)


def effusion() -> CodedConcept:
    """SCT 41699000 Effusion (here: hip joint effusion)."""
    return _fresh(codes.SCT.Effusion)


def present(value: bool) -> CodedConcept:
    return _fresh(codes.SCT.Present if value else codes.SCT.Absent)


def laterality(side: Side) -> CodedConcept:
    return _fresh(codes.SCT.Right if side == "right" else codes.SCT.Left)


# --- anatomy -------------------------------------------------------------------------------
def region_site(region: RegionName) -> CodedConcept:
    """Finding site / segmented structure of one analysed region."""
    if region == "head":
        return _fresh(codes.SCT.FemoralHead)
    if region == "neck":
        return CodedConcept("29627003", "SCT", "Structure of neck of femur")
    return _local("ITROCH", "Intertrochanteric region of femur")


def proximal_femur() -> CodedConcept:
    """SCT 310651003 Proximal Femur: the site of a whole-side finding."""
    return _fresh(codes.SCT.ProximalFemur)


def hip_joint() -> CodedConcept:
    return _fresh(codes.SCT.HipJoint)


# --- measurements --------------------------------------------------------------------------
def volume() -> CodedConcept:
    return _fresh(codes.SCT.Volume)


def oedema_volume_in_region() -> CodedConcept:
    return _local("BMEVOL", "Bone marrow oedema volume within region")


def involvement_pct() -> CodedConcept:
    return _local("BMEPCT", "Fraction of region volume with bone marrow oedema")


def signal_ratio(kind: Literal["mean", "p95"]) -> CodedConcept:
    if kind == "mean":
        return _local("SIRMEAN", "Mean fluid-sensitive signal ratio to reference marrow")
    return _local("SIRP95", "P95 fluid-sensitive signal ratio to reference marrow")


def t1_ratio() -> CodedConcept:
    return _local("T1RMEAN", "Mean T1 signal ratio to reference fatty marrow")


def effusion_volume() -> CodedConcept:
    return _local("EFFVOL", "Hip joint effusion volume")


def mean() -> CodedConcept:
    return _fresh(codes.SCT.Mean)


def unit_cm3() -> CodedConcept:
    return _fresh(codes.UCUM.CubicCentimeter)


def unit_percent() -> CodedConcept:
    return _fresh(codes.UCUM.Percent)


def unit_ratio() -> CodedConcept:
    return _fresh(codes.UCUM.Ratio)


# --- qualitative evaluations ---------------------------------------------------------------
def pattern_concept() -> CodedConcept:
    return _local("BMEPATTERN", "Bone marrow oedema pattern")


def pattern_value(pattern: Pattern) -> CodedConcept:
    if pattern == "diffuse":
        return _local("DIFFUSE", "Diffuse")
    if pattern == "focal":
        return _local("FOCAL", "Focal subchondral")
    if pattern == "regional":
        return _local("REGIONAL", "Regional, neither diffuse nor subchondral")
    return _local("NONE", "No oedema")


def subchondral_band() -> CodedConcept:
    return _local("SUBCHBAND", "Subchondral low-signal band")


def analysis_status_concept() -> CodedConcept:
    return _local("ANASTATUS", "Analysis status")


def analysis_status_value(status: Literal["not_applicable", "failed"]) -> CodedConcept:
    if status == "not_applicable":
        return _local("NOTAPPL", "Not applicable to this study")
    return _local("FAILED", "Analysis failed")


# --- report structure ----------------------------------------------------------------------
def qualitative_evaluations() -> CodedConcept:
    """DCM 126010 Qualitative Evaluations (TID 1500 row 12 container)."""
    return CodedConcept("126010", "DCM", "Qualitative Evaluations")


def draft_findings() -> CodedConcept:
    return _local("DRAFTFIND", "Imaging findings, machine-generated draft")


def histogram_analysis() -> CodedConcept:
    return _fresh(codes.cid7162.HistogramAnalysis)


def device() -> CodedConcept:
    return _fresh(codes.DCM.Device)


def procedure_reported() -> CodedConcept:
    return _fresh(codes.cid100.MRIUnspecifiedBodyRegion)


def report_title() -> CodedConcept:
    return _fresh(codes.cid7021.ImagingMeasurementReport)


def not_assessed() -> CodedConcept:
    return _local("NOTASSESSED", "Not assessed")
