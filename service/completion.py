"""Early completion: a study is complete by evidence, not only by the clock.

C-STORE has no "end of study". The quiet period (``quiet_seconds``) stays the rule for studies
whose completion cannot be judged; a study is sealed earlier, ``early_seal_seconds`` after the
association that carried its last instance was released, when the headers the listener already
reads (:data:`service.dataset_check.HEADER_TAGS`) show that:

* the series the analysis needs are there and complete: a fat-suppressed fluid-sensitive series
  (STIR/TIRM, T2/PD with fat suppression, Dixon water) and a T1 (:func:`series_role`);
* no series is evidently incomplete.

A series is complete when its instances reach ImagesInAcquisition, when it is multi-frame (an
enhanced series carries its stack in one instance), or when its slice positions along the slice
normal form a regular stack without gaps; it is incomplete when it has fewer instances than
ImagesInAcquisition or a gap in its stack; anything else cannot be judged (e.g. a 3-plane
localizer) and neither holds the study back nor counts as a needed series.

The evidence lives in memory only: a restarted listener falls back to the quiet period for the
studies it finds in ``incoming``. Instances arriving after an early seal form a new batch of the
same study that supersedes the early one (``JobStore.register_batch``, ``workers.supersede``).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

#: Inversion times of STIR (ms), as the workers' classifier uses them.
_STIR_TI_MS = (80.0, 300.0)
_T1_MAX_TR_MS = 1000.0
_T1_MAX_TE_MS = 30.0
_FLUID_MIN_TR_MS = 1500.0
#: Relative tolerance of slice spacing in a regular stack.
_SPACING_TOLERANCE = 0.1
_MIN_STACK = 3

_STIR_TEXT = re.compile(r"(?<![a-z])(stir|tirm)")
_FS_TEXT = re.compile(r"(?<![a-z])(fs|fatsat|fat[\s_-]?sat\w*|fsat|spair|spir|fat[\s_-]?supp\w*)(?![a-z])")
_NO_FS_TEXT = re.compile(r"(?<![a-z])(nfs|non[\s_-]?fs|no[\s_-]?fs|wo[\s_-]?fs)(?![a-z])")
_FLUID_TEXT = re.compile(r"(?<![a-z0-9])(t2|t2w|pd|pdw|pdfs|water|dixon[\s_-]?w)(?![a-z0-9])")
_T1_TEXT = re.compile(r"(?<![a-z0-9])t1(?![0-9])")


class Role(StrEnum):
    """What a series is for the analysis, judged from headers only."""

    FLUID_FS = "fluid_fs"
    T1 = "t1"
    OTHER = "other"


class SeriesState(StrEnum):
    """Whether a series has all its instances, as far as its headers tell."""

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    UNKNOWN = "unknown"


def _float(text: str) -> float | None:
    try:
        value = float(text.split("\\")[0])
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _floats(text: str, count: int) -> tuple[float, ...] | None:
    parts = text.split("\\")
    if len(parts) != count:
        return None
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class InstanceEvidence:
    """What one instance tells about its series' completeness and role."""

    position: float | None
    orientation: tuple[float, ...] | None
    images_in_acquisition: int | None
    frames: int
    role: Role


def series_role(header: Mapping[str, str]) -> Role:
    """The analysis role of an instance's series: fat-suppressed fluid-sensitive, T1, or other.

    A small header-only rule (text, inversion time, TR/TE, ImageType); the workers' classifier
    makes the real choice from the loaded series.
    """
    image_type = [v.strip().upper() for v in header.get("ImageType", "").split("\\")]
    if image_type[:2] == ["DERIVED", "SECONDARY"]:
        return Role.OTHER
    text = " ".join(header.get(k, "") for k in ("SeriesDescription", "ProtocolName")).lower()
    tr, te = _float(header.get("RepetitionTime", "")), _float(header.get("EchoTime", ""))
    ti = _float(header.get("InversionTime", ""))
    inversion = "IR" in header.get("ScanningSequence", "").upper().split("\\")
    fat_suppressed = ("FS" in header.get("ScanOptions", "").upper().split("\\")
                      or (_FS_TEXT.search(text) is not None and _NO_FS_TEXT.search(text) is None))
    if "WATER" in image_type or _STIR_TEXT.search(text):
        return Role.FLUID_FS
    if ti is not None and _STIR_TI_MS[0] <= ti <= _STIR_TI_MS[1]:
        return Role.FLUID_FS
    long_tr = tr is not None and tr >= _FLUID_MIN_TR_MS
    if fat_suppressed and (long_tr or _FLUID_TEXT.search(text)):
        return Role.FLUID_FS
    if _T1_TEXT.search(text) or (tr is not None and te is not None and tr <= _T1_MAX_TR_MS and te <= _T1_MAX_TE_MS
                                 and not inversion):
        return Role.T1
    return Role.OTHER


def instance_evidence(header: Mapping[str, str]) -> InstanceEvidence:
    """Parse the completion-relevant header values of one instance (text as the listener read it)."""
    orientation = _floats(header.get("ImageOrientationPatient", ""), 6)
    position = _floats(header.get("ImagePositionPatient", ""), 3)
    along: float | None = None
    if orientation is not None and position is not None:
        r, c = orientation[:3], orientation[3:]
        normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
        along = sum(p * n for p, n in zip(position, normal, strict=True))
    frames = _int(header.get("NumberOfFrames", "")) or 1
    return InstanceEvidence(
        position=along,
        orientation=None if orientation is None else tuple(round(v, 3) for v in orientation),
        images_in_acquisition=_int(header.get("ImagesInAcquisition", "")),
        frames=max(1, frames),
        role=series_role(header),
    )


def series_state(instances: Mapping[str, InstanceEvidence]) -> SeriesState:
    """Complete, incomplete or unknown, from one series' instances (see the module docstring)."""
    items = list(instances.values())
    expected = max((i.images_in_acquisition or 0 for i in items), default=0)
    frames = sum(i.frames for i in items)
    if expected:
        return SeriesState.COMPLETE if max(frames, len(items)) >= expected else SeriesState.INCOMPLETE
    if any(i.frames > 1 for i in items):
        return SeriesState.COMPLETE
    return _stack_state(items)


def _stack_state(items: list[InstanceEvidence]) -> SeriesState:
    """A regular stack (even spacing, same orientation, equal instances per position) is complete."""
    if len({i.orientation for i in items}) != 1 or any(i.position is None for i in items):
        return SeriesState.UNKNOWN
    per_position: dict[float, int] = {}
    for item in items:
        key = round(item.position or 0.0, 2)
        per_position[key] = per_position.get(key, 0) + 1
    if len(set(per_position.values())) != 1:
        return SeriesState.INCOMPLETE  # an echo/contrast missing at some position
    positions = sorted(per_position)
    if len(positions) < _MIN_STACK:
        return SeriesState.UNKNOWN
    steps = [b - a for a, b in zip(positions, positions[1:], strict=False)]
    step = sorted(steps)[len(steps) // 2]
    if step <= 0:
        return SeriesState.UNKNOWN
    if all(abs(s - step) <= _SPACING_TOLERANCE * step for s in steps):
        return SeriesState.COMPLETE
    if all(abs(s / step - round(s / step)) <= _SPACING_TOLERANCE for s in steps):
        return SeriesState.INCOMPLETE  # multiples of the spacing: slices missing in between
    return SeriesState.UNKNOWN


@dataclass
class _Study:
    series: dict[str, dict[str, InstanceEvidence]] = field(default_factory=dict)
    open_associations: set[int] = field(default_factory=set)
    last_instance: float = 0.0
    last_release: float | None = None
    last_abort: float | None = None


class CompletionTracker:
    """Per-study evidence of completeness, fed by the C-STORE handler, read by the sealer (thread-safe)."""

    def __init__(self, settle_seconds: float, forget_after_seconds: float) -> None:
        self._settle = settle_seconds
        self._forget_after = forget_after_seconds
        self._studies: dict[str, _Study] = {}
        self._assoc_studies: dict[int, set[str]] = {}
        self._lock = threading.Lock()

    def arriving(self, association: int, study: str) -> None:
        """An association is about to store an instance of ``study`` (called before the write)."""
        with self._lock:
            record = self._studies.setdefault(study, _Study())
            record.open_associations.add(association)
            record.last_instance = time.monotonic()
            self._assoc_studies.setdefault(association, set()).add(study)

    def stored(self, study: str, series: str, sop: str, header: Mapping[str, str]) -> None:
        """An instance was stored; remember what its header says."""
        evidence = instance_evidence(header)
        with self._lock:
            record = self._studies.setdefault(study, _Study())
            record.series.setdefault(series, {})[sop] = evidence
            record.last_instance = time.monotonic()

    def closed(self, association: int, *, released: bool) -> None:
        """An association ended: released (evidence the sender is done) or not (aborted, dropped)."""
        now = time.monotonic()
        with self._lock:
            for study in self._assoc_studies.pop(association, set()):
                record = self._studies.get(study)
                if record is None:
                    continue
                record.open_associations.discard(association)
                if released:
                    record.last_release = now
                else:
                    record.last_abort = now

    def complete(self, study: str, now: float) -> str | None:
        """Why ``study`` is complete by evidence now (one line), or None when it is not (yet)."""
        with self._lock:
            record = self._studies.get(study)
            if record is None or record.open_associations or record.last_release is None:
                return None
            if record.last_release < record.last_instance or now - record.last_release < self._settle:
                return None
            if record.last_abort is not None and record.last_abort >= record.last_release:
                return None
            states = {uid: series_state(instances) for uid, instances in record.series.items()}
            roles = {uid: _series_role(instances) for uid, instances in record.series.items()}
        if any(state is SeriesState.INCOMPLETE for state in states.values()):
            return None
        needed = {role: sum(1 for uid, r in roles.items() if r is role and states[uid] is SeriesState.COMPLETE)
                  for role in (Role.FLUID_FS, Role.T1)}
        if not all(needed.values()):
            return None
        judged = sum(1 for s in states.values() if s is SeriesState.COMPLETE)
        return (f"association released, {needed[Role.FLUID_FS]} fluid-sensitive fat-suppressed and "
                f"{needed[Role.T1]} T1 series complete, {judged} of {len(states)} series complete by their headers, "
                "none incomplete")

    def prune(self, now: float) -> None:
        """Forget studies with no instance and no open association for ``forget_after_seconds``."""
        with self._lock:
            stale = [uid for uid, r in self._studies.items()
                     if not r.open_associations and now - r.last_instance > self._forget_after]
            for uid in stale:
                del self._studies[uid]


def _series_role(instances: Mapping[str, InstanceEvidence]) -> Role:
    """The role most instances of a series have."""
    counts: dict[Role, int] = {}
    for item in instances.values():
        counts[item.role] = counts.get(item.role, 0) + 1
    return max(counts, key=lambda r: counts[r]) if counts else Role.OTHER
