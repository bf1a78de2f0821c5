"""The follow-up comparison in the TID 1500 SR: two measurement groups per hip.

For each hip, a TID 1410 group at the *follow-up* time point (Time Point Context, order 2)
with the hip's outline on the current study's slice where its finding is largest, the current
values, the change (mL and %) and the change status as a coded qualitative evaluation; then a TID 1501 group at the *baseline* time point (type Baseline,
order 1) with the prior study's values (oedema volume, % head / neck, effusion volume,
oedema and effusion present/absent). Both share one tracking UID (the same finding at two
time points); the finding is "Edema" only at a time point with oedema, else "No abnormality
detected". The prior study's reference goes in as observation context (Study Instance
UID, Study Date, Accession Number) on the baseline group, and a local "prior study compared
with" UID item on the follow-up group. A hip that could not be compared gets only the
follow-up group, with status "not compared" and the reason as text.

Why: OHIF v3 (3.13.2) merges groups by tracking UID and crashes on a merged finding without
a 2-D image region, so the baseline values ride on the follow-up finding (its polygon), and
the follow-up group comes first so that OHIF, which draws the first few numbers of a merged
finding, draws today's values and the change, never the prior values as if they were today's.
A hip without a polygon (not localised now) gets no comparison groups; the findings text
carries its comparison. Every number is a field of ``result.comparison`` (so the SR equals
result.json).
"""

from __future__ import annotations

from collections.abc import Mapping

import highdicom as hd
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.valuerep import DA

from workers.dicom_out import codes
from workers.dicom_out.uids import UidDeriver
from workers.followup.model import ComparedSide, Comparison, ComparisonStatus, SideComparison
from workers.followup.text import STATUS_WORD, fmt_date

ComparisonGroup = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations

#: Change status values: SNOMED CT where one says it (CID 6134 / 3235 / 6002 concepts), local otherwise.
_STATUS_CODES: dict[ComparisonStatus, tuple[str, str, str]] = {
    "resolved": ("413322009", "SCT", "Problem resolved"),
    "improved": ("19776001", "SCT", "Decrease in size"),
    "stable": ("129723006", "SCT", "No significant changes in the finding"),
    "worse": ("15454001", "SCT", "Increase in size"),
    "new": ("129721008", "SCT", "New finding"),
    "no_oedema": ("260388006", "SCT", "No change"),
    "not_compared": ("BMENOTCOMP", codes.LOCAL_SCHEME, "Not compared"),
}


def change_status_concept() -> CodedConcept:
    return codes.local("BMECHANGE", "Bone marrow oedema change since prior study")


def change_status_value(status: ComparisonStatus) -> CodedConcept:
    value, scheme, meaning = _STATUS_CODES[status]
    return CodedConcept(value, scheme, meaning)


def volume_change() -> CodedConcept:
    return codes.local("BMEVOLCHG", "Change in bone marrow oedema volume since prior study")


def volume_change_pct() -> CodedConcept:
    return codes.local("BMEVOLCHGPCT", "Percent change in bone marrow oedema volume since prior study")


def comparison_reason() -> CodedConcept:
    return codes.local("CMPREASON", "Reason the comparison was not made")


def _num(name: CodedConcept, value: float | None, unit: CodedConcept,
         site: CodedConcept | None = None, side: ComparedSide = "right") -> list[hd.sr.Measurement]:
    if value is None:
        return []
    sites = [hd.sr.FindingSite(site, laterality=codes.laterality(side))] if site is not None else None
    return [hd.sr.Measurement(name=name, value=float(value), unit=unit, finding_sites=sites)]


def _time_point(label: str, baseline: bool) -> hd.sr.TimePointContext:
    return hd.sr.TimePointContext(
        time_point=label,
        time_point_type=CodedConcept(dcm_codes.cid6146.Baseline.value, dcm_codes.cid6146.Baseline.scheme_designator,
                                     dcm_codes.cid6146.Baseline.meaning) if baseline else None,
        time_point_order=1 if baseline else 2)


def prior_study_uid_concept() -> CodedConcept:
    return codes.local("PRIORSTUDY", "Study Instance UID of the prior study compared with")


def _prior_reference(comparison: Comparison) -> list[hd.sr.ContentItem]:
    """Where the baseline values come from: the prior study (observation context of the baseline group)."""
    prior = comparison.prior
    obs = hd.sr.RelationshipTypeValues.HAS_OBS_CONTEXT
    items: list[hd.sr.ContentItem] = [
        hd.sr.UIDRefContentItem(name=CodedConcept("110180", "DCM", "Study Instance UID"),
                                value=prior.study_instance_uid, relationship_type=obs)]
    if len(prior.study_date) == 8 and prior.study_date.isdigit():
        items.append(hd.sr.DateContentItem(name=CodedConcept("111060", "DCM", "Study Date"),
                                           value=DA(prior.study_date), relationship_type=obs))
    if prior.accession_number:
        items.append(hd.sr.TextContentItem(name=CodedConcept("121022", "DCM", "Accession Number"),
                                           value=prior.accession_number, relationship_type=obs))
    return items


def _presence(concept: CodedConcept, value: bool | None) -> list[hd.sr.QualitativeEvaluation]:
    return [] if value is None else [hd.sr.QualitativeEvaluation(concept, codes.present(value))]


def _finding(present: bool | None) -> CodedConcept:
    """Edema only where oedema was found at that time point."""
    return codes.edema() if present else codes.no_abnormality()


def _baseline_group(c: SideComparison, comparison: Comparison,
                    uids: UidDeriver) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    date = fmt_date(comparison.prior.study_date)
    measurements = [
        *_num(codes.volume(), c.volume_ml_prior, codes.unit_ml()),
        *_num(codes.extent(), c.head_pct_prior, codes.unit_percent(), codes.region_site("head"), c.side),
        *_num(codes.extent(), c.neck_pct_prior, codes.unit_percent(), codes.region_site("neck"), c.side),
        *_num(codes.effusion_volume(), c.effusion_ml_prior, codes.unit_ml()),
    ]
    evaluations = [*_presence(codes.edema(), c.present_prior), *_presence(codes.effusion(), c.effusion_prior)]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=_tracking_uid(c, uids),
                                                     identifier=f"{c.side.capitalize()} hip BME at prior MRI {date}"),
        time_point_context=_time_point(f"Prior MRI {date}", baseline=True),
        finding_type=_finding(c.present_prior), finding_sites=[hd.sr.FindingSite(codes.proximal_femur(),
                                                                                 laterality=codes.laterality(c.side))],
        measurements=measurements or None, qualitative_evaluations=evaluations or None)


def _tracking_uid(c: SideComparison, uids: UidDeriver) -> str:
    """One tracking UID for the hip's comparison (its baseline and follow-up groups)."""
    return str(uids.uid(f"sr.tracking.{c.side}.change"))


def _followup_group(c: SideComparison, comparison: Comparison, current_date: str, region: hd.sr.ImageRegion,
                    uids: UidDeriver) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    prior_date = fmt_date(comparison.prior.study_date)
    measurements = [
        *_num(codes.volume(), c.volume_ml_current, codes.unit_ml()),
        *_num(volume_change(), c.change_ml, codes.unit_ml()),
        *_num(volume_change_pct(), c.change_pct, codes.unit_percent()),
        *_num(codes.extent(), c.head_pct_current, codes.unit_percent(), codes.region_site("head"), c.side),
        *_num(codes.extent(), c.neck_pct_current, codes.unit_percent(), codes.region_site("neck"), c.side),
        *_num(codes.effusion_volume(), c.effusion_ml_current, codes.unit_ml()),
    ]
    evaluations = [hd.sr.QualitativeEvaluation(change_status_concept(), change_status_value(c.status)),
                   *_presence(codes.edema(), c.present_current), *_presence(codes.effusion(), c.effusion_current)]
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_tracking_uid(c, uids),
            identifier=f"{c.side.capitalize()} hip BME since {prior_date}: {STATUS_WORD[c.status]}"),
        referenced_region=region, time_point_context=_time_point(f"Follow-up MRI {fmt_date(current_date)}", baseline=False),
        finding_type=_finding(c.present_current), finding_sites=[hd.sr.FindingSite(codes.proximal_femur(),
                                                                                   laterality=codes.laterality(c.side))],
        measurements=measurements or None, qualitative_evaluations=evaluations)


def comparison_groups(comparison: Comparison, current_date: str, regions: Mapping[ComparedSide, hd.sr.ImageRegion],
                      uids: UidDeriver) -> list[ComparisonGroup]:
    """The follow-up and baseline groups of every hip (right, then left), with the prior study's reference.

    ``regions`` = the polygon of each hip on the current study's source slice; a hip without
    one gets no groups.
    """
    groups: list[ComparisonGroup] = []
    order: tuple[ComparedSide, ...] = ("right", "left")
    for side in order:
        c = comparison.sides.get(side)
        region = regions.get(side)
        if c is None or region is None:
            continue
        follow = _followup_group(c, comparison, current_date, region, uids)
        if c.reason:
            follow[0].ContentSequence.append(hd.sr.TextContentItem(
                name=comparison_reason(), value=c.reason, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
        follow[0].ContentSequence.append(hd.sr.UIDRefContentItem(
            name=prior_study_uid_concept(), value=comparison.prior.study_instance_uid,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
        groups.append(follow)
        if c.status != "not_compared":
            baseline = _baseline_group(c, comparison, uids)
            baseline[0].ContentSequence.extend(_prior_reference(comparison))
            groups.append(baseline)
    return groups
