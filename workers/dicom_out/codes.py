"""Every coded concept MarrowMap writes, in one place to review (docs/conformance.md lists them).

Each function returns a *fresh* ``CodedConcept``: highdicom stores the object it is
given, so a concept shared between a SEG segment and an SR finding site would carry
modifiers added for one into the other (DOMAIN.md 4.3 pitfall 2).

Standard codes come from pydicom's PS3.16 dictionary where it has them; the others were
looked up and are noted where they are defined (SNOMED CT 241639000, 281900007,
29627003; UMLS C0034375). Concepts with no standard code we could verify (the
intertrochanteric region, the signal ratios, the oedema pattern as a concept name, the
effusion thickness, the reason a hip was not assessed, the follow-up change concepts) use
the local scheme ``99MARROWMAP``, declared in every SR's Coding Scheme Identification Sequence.
"""

from __future__ import annotations

from typing import Literal

import highdicom as hd
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from workers.analysis.result import RegionName, Side

LOCAL_SCHEME = "99MARROWMAP"
LOCAL_SCHEME_NAME = "MarrowMap local codes"
LOCAL_SCHEME_ORG = "MarrowMap"


def _fresh(code: Code) -> CodedConcept:
    return CodedConcept(code.value, code.scheme_designator, code.meaning)


def local(value: str, meaning: str) -> CodedConcept:
    """A concept of the local scheme (listed in docs/conformance.md)."""
    return CodedConcept(value, LOCAL_SCHEME, meaning)


def coding_scheme_item() -> hd.coding_schemes.CodingSchemeIdentificationItem:
    """Declaration of the local scheme for the Coding Scheme Identification Sequence."""
    return hd.coding_schemes.CodingSchemeIdentificationItem(
        designator=LOCAL_SCHEME, name=LOCAL_SCHEME_NAME, responsible_organization=LOCAL_SCHEME_ORG
    )


# --- findings and categories -----------------------------------------------------------------
def edema() -> CodedConcept:
    """SCT 79654002 Edema: the bone-marrow oedema finding (finding site: bone marrow)."""
    return _fresh(codes.SCT.Edema)


def no_abnormality() -> CodedConcept:
    """SCT 281900007 No abnormality detected: a hip whose marrow shows no oedema."""
    return CodedConcept("281900007", "SCT", "No abnormality detected")


def effusion() -> CodedConcept:
    """SCT 41699000 Effusion (finding site: hip joint)."""
    return _fresh(codes.SCT.Effusion)


def abnormal_structure() -> CodedConcept:
    return _fresh(codes.SCT.MorphologicallyAbnormalStructure)


def anatomical_structure() -> CodedConcept:
    return _fresh(codes.SCT.AnatomicalStructure)


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
    return local("ITROCH", "Intertrochanteric region of femur")


def bone_marrow() -> CodedConcept:
    return _fresh(codes.SCT.BoneMarrow)


def proximal_femur() -> CodedConcept:
    """SCT 310651003 Proximal Femur."""
    return _fresh(codes.SCT.ProximalFemur)


def hip_joint() -> CodedConcept:
    return _fresh(codes.SCT.HipJoint)


# --- measurements --------------------------------------------------------------------------
def volume() -> CodedConcept:
    """SCT 118565006 Volume: the volume of the group's finding (never of a region)."""
    return _fresh(codes.SCT.Volume)


def extent() -> CodedConcept:
    """SCT 260858005 Extent, in % of the region named by the measurement's finding site."""
    return CodedConcept("260858005", "SCT", "Extent")


def fluid_signal_ratio() -> CodedConcept:
    return local("FSSIR", "Fluid-sensitive signal ratio to reference marrow")


def t1_signal_ratio() -> CodedConcept:
    return local("T1SIR", "T1 signal ratio to reference marrow")


def effusion_volume() -> CodedConcept:
    """Joint effusion volume beside the oedema numbers (follow-up groups, where Volume is the oedema's)."""
    return local("EFFVOL", "Hip joint effusion volume")


def effusion_thickness() -> CodedConcept:
    return local("EFFTHICK", "Thickest joint fluid layer")


def mean() -> CodedConcept:
    return _fresh(codes.SCT.Mean)


def percentile_95() -> CodedConcept:
    return _fresh(codes.SCT._95thPercentileValueOfPopulation)


def unit_ml() -> CodedConcept:
    return CodedConcept("mL", "UCUM", "milliliter")


def unit_mm() -> CodedConcept:
    return CodedConcept("mm", "UCUM", "millimeter")


def unit_percent() -> CodedConcept:
    return _fresh(codes.UCUM.Percent)


def unit_ratio() -> CodedConcept:
    """UCUM "1": a dimensionless ratio."""
    return _fresh(codes.UCUM.NoUnits)


# --- qualitative evaluations ---------------------------------------------------------------
def pattern_concept() -> CodedConcept:
    return local("BMEPATTERN", "Bone marrow oedema pattern")


def pattern_value(pattern: Literal["diffuse", "focal", "regional"]) -> CodedConcept:
    """SCT Diffuse / Focal / Regional (focal = focal subchondral in MarrowMap's model)."""
    if pattern == "diffuse":
        return _fresh(codes.SCT.Diffuse)
    if pattern == "focal":
        return _fresh(codes.SCT.Focal)
    return _fresh(codes.SCT.Regional)



def subchondral_band() -> CodedConcept:
    return local("SUBCHBAND", "Subchondral low-signal band")


def processing_summary() -> CodedConcept:
    """DCM 111017 CAD Processing and Findings Summary: did the algorithm run, did it find anything."""
    return _fresh(codes.DCM.CADProcessingAndFindingsSummary)


def processing_summary_value(*, all_assessed: bool, findings: bool, ran: bool) -> CodedConcept:
    """DCM 111241-111245 (CID 6047): all/not all/no algorithms succeeded, with/without findings."""
    if not ran:
        return _fresh(codes.DCM.NoAlgorithmsSucceededWithoutFindings)
    if all_assessed:
        return _fresh(codes.DCM.AllAlgorithmsSucceededWithFindings if findings
                      else codes.DCM.AllAlgorithmsSucceededWithoutFindings)
    return _fresh(codes.DCM.NotAllAlgorithmsSucceededWithFindings if findings
                  else codes.DCM.NotAllAlgorithmsSucceededWithoutFindings)


def not_assessed_reason() -> CodedConcept:
    return local("NOTASSESSED", "Reason not assessed")


# --- report structure ----------------------------------------------------------------------
def qualitative_evaluations() -> CodedConcept:
    """UMLS C0034375 Qualitative Evaluations (TID 1500 row 12 container)."""
    return CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")


def findings() -> CodedConcept:
    """DCM 121070 Findings: the draft findings paragraph."""
    return _fresh(codes.DCM.Findings)


def histogram_analysis() -> CodedConcept:
    return _fresh(codes.cid7162.HistogramAnalysis)


def device() -> CodedConcept:
    return _fresh(codes.DCM.Device)


def procedure_reported_concept() -> CodedConcept:
    return _fresh(codes.DCM.ProcedureReported)


def imaging_measurements() -> CodedConcept:
    return _fresh(codes.DCM.ImagingMeasurements)


def procedure_reported() -> CodedConcept:
    """SCT 241639000 Magnetic resonance imaging of hip (CID 100 is extensible)."""
    return CodedConcept("241639000", "SCT", "Magnetic resonance imaging of hip")


def report_title() -> CodedConcept:
    return _fresh(codes.cid7021.ImagingMeasurementReport)


def key_object_title() -> CodedConcept:
    """DCM 113000 Of Interest: the KOS title PACS show as key images."""
    return _fresh(codes.DCM.OfInterest)
