"""The draft Imaging Findings paragraph, built only from measured values and flags.

Worded the way a radiologist dictates the findings of a hip MRI, abnormal side first:

- one opening line: machine-generated draft, not verified, correlate clinically;
- per hip: a normal hip plainly ("Right hip: no bone marrow oedema."); oedema with its
  volume and the share of each region it involves, naming only regions with at least
  ``NAMED_REGION_MIN_PCT`` of their volume involved; a pattern word ("diffuse", "focal
  subchondral") only when the numbers support it (``supported_pattern``); a hip that was
  not assessed once, with its reason;
- the differential: a caution for a focal subchondral pattern (exclude avascular necrosis
  and subchondral insufficiency fracture), the usual differential of diffuse oedema, and
  septic arthritis when a joint effusion is large (``LARGE_EFFUSION_ML``);
- image quality once, in plain words (fat-suppression failure from the structured fields;
  other warnings without repeating a reason already given).

Numbers are formatted by ``fmt_ml`` / ``fmt_pct`` / ``fmt_ratio`` here and nowhere else, so
the SR text, the summary image and the tests print the same figures. The text is plain
ASCII so it encodes in every source character set (ISO_IR 100, ISO_IR 192, default).
"""

from __future__ import annotations

from typing import Literal

from workers.analysis.result import AnalysisResult, Side, SideResult
from workers.followup.text import comparison_sentence

DRAFT_LABEL = "MACHINE-GENERATED DRAFT"

#: A region is named as involved from this share of its volume on (smaller shares are noise-level).
NAMED_REGION_MIN_PCT = 5.0
#: A joint effusion of at least this volume is called large (septic arthritis enters the differential).
#: A proposal to calibrate locally: normal hip joint fluid is a few mL.
LARGE_EFFUSION_ML = 10.0

_SEQUENCE_NAMES = {
    "stir": "STIR",
    "t2_fs": "fat-suppressed T2",
    "pd_fs": "fat-suppressed PD",
    "dixon_water": "Dixon water",
}
_REGION_WORDS = (("head", "head"), ("neck", "neck"), ("intertrochanteric", "intertrochanteric region"))
#: The analysis' pattern thresholds (result.algorithm.parameters), with their defaults.
_PATTERN_DEFAULTS = {"diffuse_head_pct_min": 20.0, "diffuse_neck_pct_min": 10.0,
                     "diffuse_head_only_pct_min": 50.0, "focal_head_share_min": 0.7,
                     "focal_head_pct_max": 40.0}


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


def _param(result: AnalysisResult, name: str) -> float:
    try:
        return float(result.algorithm.parameters.get(name, _PATTERN_DEFAULTS[name]))
    except ValueError:
        return _PATTERN_DEFAULTS[name]


def involved_regions(side: SideResult) -> list[tuple[str, float]]:
    """(region word, % involved) of the regions with at least ``NAMED_REGION_MIN_PCT`` involved, head first;
    when none reaches it (a small lesion), the region that holds most of the oedema."""
    pcts = {"head": side.head_involvement_pct, "neck": side.neck_involvement_pct,
            "intertrochanteric": side.intertrochanteric_involvement_pct}
    named = [(word, pct) for key, word in _REGION_WORDS
             if (pct := pcts[key]) is not None and pct >= NAMED_REGION_MIN_PCT]
    holding = [(m.oedema_volume_ml, key) for key, m in side.regions.items() if m.oedema_volume_ml > 0]
    if named or not holding:
        return named
    key = max(holding)[1]
    return [(dict(_REGION_WORDS)[key], side.regions[key].involvement_pct)]


def supported_pattern(side: SideResult, result: AnalysisResult) -> Literal["diffuse", "focal", "regional"] | None:
    """The pattern the numbers support, or None (then no pattern is written or coded).

    "diffuse": head and neck involved (or most of the head), with the analysis' own thresholds;
    "focal" (subchondral): the oedema lies mostly in the head and involves a small part of it;
    "regional" (neither, e.g. the neck only): coded and tabled, but no word in the findings text,
    which names the regions instead.
    """
    if not side.present:
        return None
    if side.pattern == "regional":
        return "regional"
    head, neck = side.head_involvement_pct or 0.0, side.neck_involvement_pct or 0.0
    if side.pattern == "diffuse":
        both = head >= _param(result, "diffuse_head_pct_min") and neck >= _param(result, "diffuse_neck_pct_min")
        return "diffuse" if both or head >= _param(result, "diffuse_head_only_pct_min") else None
    if side.pattern == "focal":
        head_region = side.regions.get("head")
        total = side.oedema_volume_ml or 0.0
        share = (head_region.oedema_volume_ml / total) if (head_region is not None and total > 0) else 0.0
        small = 0.0 < head < _param(result, "focal_head_pct_max")
        return "focal" if small and share >= _param(result, "focal_head_share_min") else None
    return None


def large_effusion(side: SideResult) -> bool:
    """A joint effusion of at least ``LARGE_EFFUSION_ML``."""
    return bool(side.effusion) and (side.effusion_volume_ml or 0.0) >= LARGE_EFFUSION_ML


def _where(side: SideResult) -> str:
    words = [word for word, _ in involved_regions(side)]
    if not words:
        return "proximal femur"
    if len(words) == 1:
        return words[0] if words[0] == "intertrochanteric region" else f"femoral {words[0]}"
    return "femoral " + ", ".join(words[:-1]) + " and " + words[-1]


def _signal(side: SideResult, sequence: str) -> str:
    parts = []
    if side.mean_signal_ratio is not None:
        parts.append(f"{sequence} signal {fmt_ratio(side.mean_signal_ratio)} x reference marrow")
    if side.mean_t1_ratio is None:
        parts.append("T1 not assessed")
    elif side.mean_t1_ratio < 1.0:
        parts.append(f"low T1 signal ({fmt_ratio(side.mean_t1_ratio)} x reference marrow)")
    else:
        parts.append(f"no T1 signal loss ({fmt_ratio(side.mean_t1_ratio)} x reference marrow)")
    return ", ".join(parts)


def _effusion_sentence(side: SideResult) -> str:
    name = side.side
    if side.effusion is None:
        return ""
    if not side.effusion:
        return f"No {name} hip joint effusion."
    lead = f"Large {name} hip joint effusion" if large_effusion(side) else f"{name.capitalize()} hip joint effusion"
    details = []
    if side.effusion_volume_ml is not None:
        details.append(fmt_ml(side.effusion_volume_ml))
    if side.effusion_thickness_mm is not None:
        details.append(f"fluid layer up to {side.effusion_thickness_mm:.0f} mm")
    return lead + (f" ({', '.join(details)})" if details else "") + "."


def _oedema_sentences(side: SideResult, result: AnalysisResult, sequence: str) -> list[str]:
    name = side.side.capitalize()
    word = {"diffuse": "diffuse ", "focal": "focal subchondral "}.get(supported_pattern(side, result) or "", "")
    shares = [f"{fmt_pct(pct)} of the {region}" for region, pct in involved_regions(side)]
    sentence = f"{name} hip: {word}bone marrow oedema of the {_where(side)}, {fmt_ml(side.oedema_volume_ml or 0.0)}"
    if shares:
        sentence += f" ({', '.join(shares)})"
    sentences = [sentence + f"; {_signal(side, sequence)}."]
    if side.medial_head_sparing:
        sentences.append(f"Relative sparing of the medial {side.side} femoral head.")
    if side.subchondral_low_signal_band is True:
        sentences.append(f"Subchondral low-signal band in the {side.side} femoral head.")
    elif side.subchondral_low_signal_band is False and word.startswith("focal"):
        sentences.append(f"No subchondral low-signal band in the {side.side} femoral head.")
    return sentences


def side_sentences(side: SideResult, result: AnalysisResult, sequence: str) -> list[str]:
    """The sentences about one hip."""
    name = side.side.capitalize()
    if not side.localized:
        return [f"{name} hip: not assessed ({side.reason or 'not localised'})."]
    if side.present is None:
        return [f"{name} hip: bone marrow oedema not assessed ({side.reason or 'result withheld'})."]
    effusion = _effusion_sentence(side)
    if not side.present:
        if side.effusion is False:
            return [f"{name} hip: no bone marrow oedema, no joint effusion."]
        return [f"{name} hip: no bone marrow oedema.", effusion]
    return [*_oedema_sentences(side, result, sequence), effusion]


def _differential(sides: list[SideResult], result: AnalysisResult) -> list[str]:
    out = []
    focal = [s.side for s in sides if supported_pattern(s, result) == "focal"]
    other = [s for s in sides if s.present and supported_pattern(s, result) != "focal"]
    septic = [s.side for s in sides if large_effusion(s)]
    if focal:
        out.append(f"Caution: a focal subchondral pattern ({' and '.join(focal)} hip) calls for excluding avascular "
                   "necrosis and a subchondral insufficiency fracture (look for a subchondral T1 line or band).")
    if other:
        ddx = "Differential of the bone marrow oedema: transient osteoporosis (bone marrow oedema syndrome), " \
              "early avascular necrosis, stress or insufficiency fracture"
        if septic:
            ddx += ", and septic arthritis given the large effusion"
        out.append(ddx + ".")
    elif septic:
        out.append(f"Large {' and '.join(septic)} hip joint effusion: septic arthritis is in the differential.")
    return out


def _first_clause(text: str) -> str:
    text = text.strip().lower()
    for prefix in ("right: ", "left: "):
        text = text.removeprefix(prefix)
    return text.split(";")[0].strip().rstrip(".")


def _fat_suppression(result: AnalysisResult, sequence: str, told: list[str]) -> str:
    if result.quality.fat_suppression_ok is not False or any("fat suppression" in t.lower() for t in told):
        return ""
    limit = float(result.algorithm.parameters.get("fat_sat_ratio_max", "1.0"))
    failed = [s for s in result.sides.values() if (s.fat_suppression_ratio or 0.0) >= limit and s.present is not None]
    text = f"fat suppression failed on the {sequence} series, so unsuppressed fat can mimic oedema"
    if failed:
        where = " and ".join(f"{s.side} hip {fmt_ratio(s.fat_suppression_ratio or 0.0)} x muscle" for s in failed)
        text += f" (fat signal: {where}); oedema was counted only where T1 is dark"
    return text


def quality_sentence(result: AnalysisResult, told: list[str]) -> str:
    """Image quality in plain words, once; nothing already said in ``told`` (the reasons given) again."""
    sequence = fluid_sequence_name(result)
    said = {_first_clause(t) for t in told}
    notes = [n for n in [_fat_suppression(result, sequence, told)] if n]
    for warning in result.quality.warnings:
        clause = _first_clause(warning)
        if clause in said or clause.startswith("fat suppression failed"):
            continue
        said.add(clause)
        notes.append(warning.strip().rstrip("."))
    if not notes:
        return ""
    text = "Image quality: " + "; ".join(notes) + "."
    if result.quality.confidence == "reduced":
        text += " Confidence in these measurements is reduced."
    return text


def _ordered_sides(result: AnalysisResult) -> list[SideResult]:
    order: tuple[Side, ...] = ("right", "left")
    sides = [result.sides[s] for s in order if s in result.sides]
    return sorted(sides, key=lambda s: 0 if s.present else 1)  # abnormal side(s) first, as dictated


def draft_findings(result: AnalysisResult) -> str:
    """The findings paragraph for ``result``: the draft line, then the findings."""
    head = (f"{DRAFT_LABEL} ({result.algorithm.name} {result.algorithm.version}), not verified by a radiologist; "
            "correlate clinically.")
    if result.status == "not_applicable":
        return f"{head} Bone marrow oedema analysis not performed: {result.reason or 'not applicable'}."
    if result.status == "failed":
        return f"{head} Bone marrow oedema analysis failed: {result.reason or 'unknown error'}. No measurements."
    sequence = fluid_sequence_name(result)
    sides = _ordered_sides(result)
    sentences = [head]
    for side in sides:
        sentences.extend(side_sentences(side, result, sequence))
    sentences.extend(f"{s.capitalize()} hip: not analysed." for s in ("right", "left") if s not in result.sides)
    sentences.extend(_differential(sides, result))
    if result.comparison is not None:
        sentences.append(comparison_sentence(result.comparison, fmt_ml))
    sentences.append(quality_sentence(result, [s.reason for s in sides if s.reason]))
    return " ".join(s.strip() for s in sentences if s.strip())
