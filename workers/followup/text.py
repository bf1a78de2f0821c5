"""How the comparison reads: the findings sentence and the summary table rows.

Volumes are formatted by the caller's ``fmt_ml`` (the findings module's, so every output
prints the same figures); the text is plain ASCII (it goes into the SR in any character set).
"""

from __future__ import annotations

from collections.abc import Callable

from workers.followup.model import Comparison, ComparisonStatus, SideComparison

Fmt = Callable[[float], str]

STATUS_WORD: dict[ComparisonStatus, str] = {
    "resolved": "resolved",
    "improved": "improved",
    "stable": "stable",
    "worse": "worse",
    "new": "new",
    "no_oedema": "no oedema",
    "not_compared": "not compared",
}
_ORDER: dict[ComparisonStatus, int] = {"worse": 0, "new": 1, "improved": 2, "resolved": 3, "stable": 4,
                                       "no_oedema": 5, "not_compared": 6}


def fmt_date(da: str) -> str:
    """DICOM DA ``YYYYMMDD`` as ``YYYY-MM-DD`` ("unknown date" when empty)."""
    da = da.strip()
    if len(da) == 8 and da.isdigit():
        return f"{da[:4]}-{da[4:6]}-{da[6:]}"
    return da or "unknown date"


def fmt_change_pct(value: float) -> str:
    """A signed percent change, whole percent."""
    return f"{value:+.0f} %"


def _volumes(c: SideComparison, fmt_ml: Fmt) -> str:
    if c.volume_ml_prior is None or c.volume_ml_current is None:
        return ""
    text = f"{fmt_ml(c.volume_ml_prior)} -> {fmt_ml(c.volume_ml_current)}"
    if c.change_pct is not None and c.status in ("improved", "stable", "worse"):
        text += f", {fmt_change_pct(c.change_pct)}"
    return f" ({text})"


def side_clause(c: SideComparison, fmt_ml: Fmt) -> str:
    """One hip's change in words, e.g. "left hip bone marrow oedema has resolved (42.1 mL -> 0.0 mL)"."""
    subject = f"{c.side} hip bone marrow oedema"
    volumes = _volumes(c, fmt_ml)
    if c.status == "resolved":
        return f"{subject} has resolved{volumes}"
    if c.status == "improved":
        return f"{subject} has improved{volumes}"
    if c.status == "stable":
        return f"{subject} is stable{volumes}"
    if c.status == "worse":
        return f"{subject} has increased{volumes}"
    if c.status == "new":
        return f"new {subject}{volumes}"
    if c.status == "no_oedema":
        return f"no {subject} at either time"
    return f"{c.side} hip not compared ({c.reason or 'not assessed'})"


def prior_name(comparison: Comparison) -> str:
    """"the prior MRI of 2026-03-02 (accession A123)"."""
    prior = comparison.prior
    accession = f" (accession {prior.accession_number})" if prior.accession_number else ""
    return f"the prior MRI of {fmt_date(prior.study_date)}{accession}"


def comparison_sentence(comparison: Comparison, fmt_ml: Fmt) -> str:
    """The findings sentence: "Compared with the prior MRI of ...: left hip ... ; no right hip ... ."."""
    sides = sorted(comparison.sides.values(), key=lambda c: (_ORDER[c.status], c.side != "right"))
    clauses = "; ".join(side_clause(c, fmt_ml) for c in sides)
    return f"Compared with {prior_name(comparison)}: {clauses}."
