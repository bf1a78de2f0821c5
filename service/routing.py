"""Which sealed studies become analysis jobs: MR hip/pelvis only (configurable, explained).

A study is analysed when at least one series has a routed modality and a routed SOP class
(MR Image / Enhanced MR Image by default) AND one of those series, or the study, is marked
as hip/pelvis: BodyPartExamined in ``route_body_parts``, or a word of
``route_description_keywords`` in the study description, series description or protocol name.
Everything else is accepted and skipped; the reason names what was seen.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from marrowmap.manifest import ManifestSeries, RouteDecision
from marrowmap.settings import Settings


def _keyword_pattern(keywords: Sequence[str]) -> re.Pattern[str] | None:
    words = [re.escape(k.strip().lower()) for k in keywords if k.strip()]
    if not words:
        return None
    return re.compile(r"(?<![a-z0-9])(" + "|".join(sorted(words, key=len, reverse=True)) + r")(?![a-z0-9])")


def decide(series: Sequence[ManifestSeries], study_description: str, settings: Settings) -> RouteDecision:
    """Decide whether a study is a hip/pelvis MR study; the reason says why either way."""
    modalities = {m.upper() for m in settings.route_modalities}
    sop_classes = set(settings.route_sop_classes)
    candidates = [
        s for s in series
        if s.modality.upper() in modalities and sop_classes.intersection(s.sop_class_uids)
    ]
    if not candidates:
        seen = sorted({s.modality or "?" for s in series})
        return RouteDecision(
            analyse=False,
            reason=f"no {'/'.join(sorted(modalities))} image series of a routed SOP class "
                   f"(modalities seen: {', '.join(seen)})",
        )
    body_parts = {b.upper() for b in settings.route_body_parts}
    for s in candidates:
        if s.body_part_examined.upper() in body_parts:
            return RouteDecision(
                analyse=True,
                reason=f"BodyPartExamined {s.body_part_examined} in series {s.series_instance_uid}",
            )
    pattern = _keyword_pattern(settings.route_description_keywords)
    if pattern is not None:
        match = pattern.search(study_description.lower())
        if match:
            return RouteDecision(analyse=True, reason=f"study description contains '{match.group(1)}'")
        for s in candidates:
            for label, text in (("series description", s.series_description), ("protocol name", s.protocol_name)):
                match = pattern.search(text.lower())
                if match:
                    return RouteDecision(
                        analyse=True,
                        reason=f"{label} of series {s.series_instance_uid} contains '{match.group(1)}'",
                    )
    parts = sorted({s.body_part_examined or "(none)" for s in candidates})
    descriptions = sorted({d for s in candidates for d in (s.series_description, s.protocol_name) if d})
    return RouteDecision(
        analyse=False,
        reason=f"MR study with no hip/pelvis marker (BodyPartExamined: {', '.join(parts)}; "
               f"study description: '{study_description}'; series: {', '.join(repr(d) for d in descriptions[:6])})",
    )
