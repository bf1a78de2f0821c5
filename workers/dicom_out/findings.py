"""The draft Imaging Findings paragraph, built only from measured values and flags.

Worded the way a radiologist writes the findings of a hip MRI report, abnormal side
first, and always labelled as a machine-generated draft. Numbers are formatted by
``fmt_ml`` / ``fmt_pct`` / ``fmt_ratio`` here and nowhere else, so the SR text, the
summary image and the tests print the same figures. The text is plain ASCII so it
encodes in every source character set (ISO_IR 100, ISO_IR 192, default).
"""

from __future__ import annotations

from workers.analysis.result import AnalysisResult, Side, SideResult
from workers.followup.text import comparison_sentence

DRAFT_LABEL = "MACHINE-GENERATED DRAFT, not verified by a radiologist"

_SEQUENCE_NAMES = {
    "stir": "STIR",
    "t2_fs": "fat-suppressed T2",
    "pd_fs": "fat-suppressed PD",
    "dixon_water": "Dixon water",
}


def fmt_ml(value: float) -> str:
    """A volume as printed everywhere: one decimal, mL."""
    return f"{value:.1f} mL"


def fmt_pct(value: float) -> str:
    """A percentage as printed everywhere: whole percent ("<1 %" for a small non-zero share)."""
    if 0 < value < 0.5:
        return "<1 %"
    return f"{value:.0f} %"


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}"


def fluid_sequence_name(result: AnalysisResult) -> str:
    """Short name of the fluid-sensitive sequence used ("STIR", ...)."""
    uid = result.series_used.fluid_sensitive
    for report in result.series:
        if report.series_instance_uid == uid:
            return _SEQUENCE_NAMES.get(report.kind, "fluid-sensitive")
    return "fluid-sensitive"


def _involved_regions(side: SideResult) -> str:
    names = []
    if (side.head_involvement_pct or 0) > 0:
        names.append("head")
    if (side.neck_involvement_pct or 0) > 0:
        names.append("neck")
    if (side.intertrochanteric_involvement_pct or 0) > 0:
        names.append("intertrochanteric region")
    if not names:
        return "proximal femur"
    if len(names) == 1:
        return f"femoral {names[0]}" if names[0] != "intertrochanteric region" else names[0]
    return "femoral " + ", ".join(names[:-1]) + " and " + names[-1]


def _extent(side: SideResult) -> str:
    parts = []
    if side.oedema_volume_ml is not None:
        parts.append(fmt_ml(side.oedema_volume_ml))
    for label, pct in (
        ("head", side.head_involvement_pct),
        ("neck", side.neck_involvement_pct),
        ("intertrochanteric region", side.intertrochanteric_involvement_pct),
    ):
        if pct is not None and pct > 0:
            parts.append(f"{fmt_pct(pct)} of the {label}")
    return "; ".join(parts)


def _signal(side: SideResult, sequence: str) -> str:
    parts = []
    if side.mean_signal_ratio is not None:
        parts.append(f"high signal on {sequence} (mean ratio {fmt_ratio(side.mean_signal_ratio)} "
                     "to reference marrow)")
    if side.mean_t1_ratio is None:
        parts.append("T1 not assessed")
    elif side.mean_t1_ratio < 1.0:
        parts.append(f"low signal on T1 (ratio {fmt_ratio(side.mean_t1_ratio)})")
    else:
        parts.append(f"no T1 signal loss (ratio {fmt_ratio(side.mean_t1_ratio)})")
    return " and ".join(parts)


def _effusion(side: SideResult) -> str:
    if side.effusion is None:
        return ""
    if side.effusion:
        volume = f" ({fmt_ml(side.effusion_volume_ml)})" if side.effusion_volume_ml is not None else ""
        return f"{side.side.capitalize()} hip joint effusion{volume}."
    return f"No {side.side} hip joint effusion."


def _oedema_sentences(side: SideResult, sequence: str) -> list[str]:
    pattern = {"diffuse": "Diffuse", "focal": "Focal subchondral"}.get(side.pattern or "", "")
    lead = f"{pattern} bone marrow oedema" if pattern else "Bone marrow oedema"
    extent = _extent(side)
    sentence = f"{lead} of the {side.side} {_involved_regions(side)}"
    if extent:
        sentence += f" ({extent})"
    sentence += f", {_signal(side, sequence)}."
    sentences = [sentence]
    if side.medial_head_sparing:
        sentences.append(f"Relative sparing of the medial {side.side} femoral head.")
    if side.subchondral_low_signal_band is True:
        sentences.append(f"Subchondral low-signal band in the {side.side} femoral head.")
    elif side.subchondral_low_signal_band is False:
        sentences.append(f"No subchondral low-signal band in the {side.side} femoral head.")
    return sentences


def side_sentences(side: SideResult, sequence: str) -> list[str]:
    """The sentences about one hip."""
    name = side.side.capitalize()
    if not side.localized:
        reason = f" ({side.reason})" if side.reason else ""
        return [f"{name} hip: not assessed{reason}; no measurements."]
    if side.present is None:
        reason = f" ({side.reason})" if side.reason else ""
        return [f"{name} hip: marrow oedema not assessed{reason}."]
    effusion = _effusion(side)
    if not side.present:
        text = f"{name} hip: normal marrow signal, no bone marrow oedema detected."
        if side.oedema_volume_ml:
            text = (f"{name} hip: no bone marrow oedema detected ({fmt_ml(side.oedema_volume_ml)} of "
                    "oedema-like signal, below the reporting threshold).")
        return [text, effusion] if effusion else [text]
    sentences = _oedema_sentences(side, sequence)
    if effusion:
        sentences.append(effusion)
    return sentences


def _ordered_sides(result: AnalysisResult) -> list[SideResult]:
    order: tuple[Side, ...] = ("right", "left")
    sides = [result.sides[s] for s in order if s in result.sides]
    # abnormal side(s) first, as a radiologist dictates
    return sorted(sides, key=lambda s: 0 if s.present else 1)


def draft_findings(result: AnalysisResult) -> str:
    """The findings paragraph for ``result``, starting with the draft label."""
    head = f"{DRAFT_LABEL} ({result.algorithm.name} {result.algorithm.version})."
    if result.status == "not_applicable":
        return f"{head} Bone marrow oedema analysis not performed: {result.reason or 'not applicable'}."
    if result.status == "failed":
        return (f"{head} Bone marrow oedema analysis failed: {result.reason or 'unknown error'}. "
                "No measurements are reported.")
    sequence = fluid_sequence_name(result)
    sentences = [head]
    for side in _ordered_sides(result):
        sentences.extend(side_sentences(side, sequence))
    missing = [s for s in ("right", "left") if s not in result.sides]
    sentences.extend(f"{s.capitalize()} hip: not analysed." for s in missing)
    if result.comparison is not None:
        sentences.append(comparison_sentence(result.comparison, fmt_ml))
    quality = result.quality
    if quality.confidence != "normal":
        sentences.append(f"Confidence {quality.confidence}.")
    if quality.warnings:
        sentences.append("Technical note: " + "; ".join(w.rstrip(".") for w in quality.warnings) + ".")
    return " ".join(s.strip() for s in sentences if s.strip())
