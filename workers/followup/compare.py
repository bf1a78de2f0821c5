"""Compare a study's analysis with the same patient's prior one, per hip. Pure: no I/O.

Status per side (volumes are the analysis' oedema volumes in mL; "present" is the
analysis' own reporting decision, ``AnalysisParameters.present_min_ml``):

- ``not_compared``: the side was not localised, or its oedema not assessed, in either study;
- ``no_oedema``: no oedema reported at either time;
- ``new``: none reported before, present now;
- ``resolved``: present before, and now none reported, or now < ``RESOLVED_MAX_ML`` mL,
  or now < ``RESOLVED_MAX_FRACTION`` of the prior volume;
- ``stable``: |change| <= ``STABLE_MAX_ML`` mL or |change| < ``CHANGE_MIN_PCT`` % of the prior;
- ``improved``: decrease of at least ``CHANGE_MIN_PCT`` % and more than ``STABLE_MAX_ML`` mL;
- ``worse``: increase of at least ``CHANGE_MIN_PCT`` % and more than ``STABLE_MAX_ML`` mL.
"""

from __future__ import annotations

from marrowmap.priors import study_moment
from workers.analysis.result import AnalysisResult, Side, SideResult
from workers.followup.model import Comparison, ComparisonStatus, PriorStudyRef, SideComparison

RESOLVED_MAX_ML = 1.0
RESOLVED_MAX_FRACTION = 0.10
CHANGE_MIN_PCT = 25.0
STABLE_MAX_ML = 2.0
CHANGE_ML_DECIMALS = 2  # as the analysis rounds its volumes
CHANGE_PCT_DECIMALS = 1

THRESHOLDS: dict[str, float] = {
    "resolved_max_ml": RESOLVED_MAX_ML,
    "resolved_max_fraction_of_prior": RESOLVED_MAX_FRACTION,
    "change_min_pct": CHANGE_MIN_PCT,
    "stable_max_ml": STABLE_MAX_ML,
}
SIDES: tuple[Side, ...] = ("right", "left")


class ComparisonError(ValueError):
    """The two results cannot be compared (not analysed, same study, prior not earlier)."""


def _not_compared(side: Side, prior: SideResult | None, current: SideResult | None) -> str:
    """Why a side cannot be compared, or '' when it can."""
    for when, s in (("prior", prior), ("current", current)):
        if s is None:
            return f"the {side} hip was not analysed in the {when} study"
        if not s.localized:
            return f"the {side} hip was not localised in the {when} study"
        if s.present is None or s.oedema_volume_ml is None:
            return f"the {side} hip's oedema was not assessed in the {when} study"
    return ""


def side_status(present_prior: bool, present_current: bool, prior_ml: float, current_ml: float) -> ComparisonStatus:
    """The change status of one hip from its reported presence and volumes (see module doc)."""
    if not present_prior:
        return "new" if present_current else "no_oedema"
    if (not present_current or current_ml < RESOLVED_MAX_ML
            or current_ml < RESOLVED_MAX_FRACTION * prior_ml):
        return "resolved"
    change = current_ml - prior_ml
    pct = 100.0 * change / prior_ml if prior_ml > 0 else float("inf")
    if abs(change) <= STABLE_MAX_ML or abs(pct) < CHANGE_MIN_PCT:
        return "stable"
    return "improved" if change < 0 else "worse"


def compare_side(side: Side, prior: SideResult | None, current: SideResult | None) -> SideComparison:
    """One hip then and now."""
    reason = _not_compared(side, prior, current)
    if (reason or prior is None or current is None or prior.present is None or current.present is None
            or prior.oedema_volume_ml is None or current.oedema_volume_ml is None):
        return SideComparison(side=side, status="not_compared", reason=reason)
    then, now = prior.oedema_volume_ml, current.oedema_volume_ml
    change = round(now - then, CHANGE_ML_DECIMALS)
    return SideComparison(
        side=side,
        status=side_status(prior.present, current.present, then, now),
        present_prior=prior.present,
        present_current=current.present,
        volume_ml_prior=then,
        volume_ml_current=now,
        change_ml=change,
        change_pct=round(100.0 * (now - then) / then, CHANGE_PCT_DECIMALS) if then > 0 else None,
        head_pct_prior=prior.head_involvement_pct,
        head_pct_current=current.head_involvement_pct,
        neck_pct_prior=prior.neck_involvement_pct,
        neck_pct_current=current.neck_involvement_pct,
        effusion_prior=prior.effusion,
        effusion_current=current.effusion,
        effusion_ml_prior=prior.effusion_volume_ml,
        effusion_ml_current=current.effusion_volume_ml,
    )


def compare_results(current: AnalysisResult, prior: AnalysisResult, prior_ref: PriorStudyRef) -> Comparison:
    """The comparison of ``current`` with ``prior`` (both analysed, prior earlier, different studies)."""
    if current.status != "analyzed" or prior.status != "analyzed":
        raise ComparisonError(f"both studies must be analysed (current: {current.status}, prior: {prior.status})")
    if current.study_instance_uid and prior_ref.study_instance_uid == current.study_instance_uid:
        raise ComparisonError("the prior is the same study as the current one")
    then = study_moment(prior_ref.study_date, prior_ref.study_time)
    now = study_moment(current.study_date, current.study_time)
    if then is not None and now is not None and then >= now:
        raise ComparisonError(f"the prior study ({prior_ref.study_date}) is not earlier than the current one "
                              f"({current.study_date})")
    sides = {side: compare_side(side, prior.sides.get(side), current.sides.get(side)) for side in SIDES}
    return Comparison(prior=prior_ref, sides=sides, thresholds=dict(THRESHOLDS))


def prior_ref_of(prior: AnalysisResult, job_id: str = "") -> PriorStudyRef:
    """The reference of an analysed prior result (from its own study header fields)."""
    if not prior.study_instance_uid:
        raise ComparisonError("the prior result has no study instance UID")
    return PriorStudyRef(study_instance_uid=prior.study_instance_uid, study_date=prior.study_date,
                         study_time=prior.study_time, accession_number=prior.accession_number, job_id=job_id)
