"""Which sealed studies become analysis jobs: MR hip/pelvis only (configurable, explained).

A candidate series has a routed modality and a routed SOP class (MR Image / Enhanced MR Image
by default), is not one of MarrowMap's own results (Manufacturer/Model, ``marrowmap.markers``)
and is not ImageType DERIVED\\SECONDARY. A batch is analysed when a candidate series received
instances in it AND a candidate series, or the study, is marked as hip/pelvis: BodyPartExamined
in ``route_body_parts``, or a word of ``route_description_keywords`` in the study description,
series description or protocol name. Everything else is accepted and skipped; the reason names
what was seen. A batch that brought only MarrowMap's own results (the PACS routed them back) is
flagged ``own_results``: logged, never a job.
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


def _arrived(s: ManifestSeries) -> bool:
    return s.new_instance_count is None or s.new_instance_count > 0


def _own_results(arrived: Sequence[ManifestSeries]) -> RouteDecision:
    count = sum(s.new_instance_count or s.instance_count for s in arrived)
    return RouteDecision(
        analyse=False, own_results=True,
        reason=f"only MarrowMap's own results arrived ({count} instance(s) in {len(arrived)} series); "
               "results are never analysed")


def decide(series: Sequence[ManifestSeries], study_description: str, settings: Settings) -> RouteDecision:
    """Decide whether a study batch is a hip/pelvis MR study to analyse; the reason says why either way."""
    modalities = {m.upper() for m in settings.route_modalities}
    sop_classes = set(settings.route_sop_classes)
    candidates = [
        s for s in series
        if s.modality.upper() in modalities and sop_classes.intersection(s.sop_class_uids)
        and not s.own_output and not s.derived_secondary
    ]
    arrived = [s for s in series if _arrived(s)]
    if arrived and all(s.own_output for s in arrived):
        return _own_results(arrived)
    if candidates and not any(_arrived(s) for s in candidates):
        return RouteDecision(analyse=False, reason="no new MR image of the study arrived in this batch "
                                                   "(only other objects); nothing to analyse again")
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
