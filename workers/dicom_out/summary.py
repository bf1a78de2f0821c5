"""What the summary key image says: a table per side, the draft findings and the quality notes."""

from __future__ import annotations

from workers.analysis.result import AnalysisResult, SideResult
from workers.dicom_out.findings import fluid_sequence_name, fmt_ml, fmt_pct, fmt_ratio
from workers.dicom_out.render import SummaryContent, clean_text

_PATTERN_TEXT = {"diffuse": "diffuse", "focal": "focal subchondral", "regional": "regional", "none": "none"}


def _yes_no(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else fmt_pct(value)


def _volume(side: SideResult) -> str:
    if side.oedema_volume_ml is None:
        return "n/a"
    if not side.present and side.oedema_volume_ml > 0:
        return f"{fmt_ml(side.oedema_volume_ml)} (below threshold)"
    return fmt_ml(side.oedema_volume_ml)


def _cell_values(side: SideResult | None) -> list[str]:
    if side is None or not side.localized:
        return ["not assessed", *(["-"] * 9)]
    oedema = {True: "PRESENT", False: "not detected", None: "not assessed"}[side.present]
    # signal ratios describe the reported oedema; below the threshold they would read as a finding
    ratio = "-" if not side.present or side.mean_signal_ratio is None else fmt_ratio(side.mean_signal_ratio)
    if side.present and side.p95_signal_ratio is not None:
        ratio += f" / {fmt_ratio(side.p95_signal_ratio)}"
    t1 = "-" if not side.present or side.mean_t1_ratio is None else fmt_ratio(side.mean_t1_ratio)
    if side.effusion is None:
        effusion = "n/a"
    elif side.effusion:
        effusion = "yes" + (f" ({fmt_ml(side.effusion_volume_ml)})" if side.effusion_volume_ml is not None else "")
    else:
        effusion = "no"
    return [
        oedema,
        _volume(side),
        _pct(side.head_involvement_pct),
        _pct(side.neck_involvement_pct),
        _pct(side.intertrochanteric_involvement_pct),
        "n/a" if side.pattern is None else _PATTERN_TEXT[side.pattern],
        _yes_no(side.subchondral_low_signal_band),
        ratio,
        t1,
        effusion,
    ]


def _series_name(result: AnalysisResult, uid: str | None) -> str:
    if uid is None:
        return "not available"
    for report in result.series:
        if report.series_instance_uid == uid:
            return f"series {report.series_number if report.series_number is not None else '-'} ({clean_text(report.series_description, 64)})"
    return uid


ROW_LABELS = ("Bone marrow oedema", "Oedema volume", "% femoral head", "% femoral neck",
              "% intertrochanteric", "Pattern", "Subchondral band", "SI ratio mean / p95",
              "T1 ratio (mean)", "Joint effusion")


def summary_content(result: AnalysisResult, findings_text: str) -> SummaryContent:
    """The summary's table, text and notes for ``result``."""
    version = result.algorithm.version
    if result.status != "analyzed":
        word = "FAILED" if result.status == "failed" else "NOT ANALYSED"
        return SummaryContent(version=version, title=f"Bone marrow oedema: {word}", table_header=(),
                              table_rows=(), findings=findings_text,
                              notes=(f"Reason: {result.reason or 'not given'}",))
    right, left = _cell_values(result.sides.get("right")), _cell_values(result.sides.get("left"))
    rows = tuple((label, r, lft) for label, r, lft in zip(ROW_LABELS, right, left, strict=True))
    notes = []
    sequence = fluid_sequence_name(result)
    notes.append(f"Series used: {sequence} {_series_name(result, result.series_used.fluid_sensitive)}"
                 f"; T1 {_series_name(result, result.series_used.t1)}.")
    refs = [f"{s.side}: {s.reference}" for s in result.sides.values() if s.reference]
    if refs:
        notes.append("Reference marrow - " + "; ".join(refs) + ".")
    quality = result.quality
    notes.append(f"Confidence: {quality.confidence}.")
    notes.extend(f"Warning: {w}" for w in quality.warnings)
    return SummaryContent(version=version, title="Bone marrow oedema summary",
                          table_header=("", "Right hip", "Left hip"), table_rows=rows,
                          findings=findings_text, notes=tuple(notes))
