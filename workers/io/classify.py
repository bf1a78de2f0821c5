"""Identify an MR series (kind and plane) from its headers, vendor-robustly, with evidence.

Physics first (ScanningSequence/ScanOptions, TR/TE/TI, Enhanced MR functional groups),
text (SeriesDescription, ProtocolName, SequenceName) to confirm or to fill gaps. Every
decision is recorded as a short evidence string, e.g. ``"TI=150ms (STIR range at 1.5T,
typical)"``, ``"ScanOptions contains FS"`` or ``"SeriesDescription contains 'stir'"``.
Order: localizer, diffusion/ADC, derived, post-contrast (all excluded from analysis), Dixon,
inversion recovery (STIR/FLAIR), TR/TE weighting (T1/T2/PD) with fat suppression, text.
Rules: /work/shared/docs/DOMAIN.md section 3.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from workers.io.headers import (
    functional_group_item,
    number,
    orientation_of,
    same_orientation,
    tokens,
)
from workers.io.types import Classification, Plane, SeriesKind

OBLIQUE_TOLERANCE_DEG = 25.0
STIR_TI_MS = (80.0, 300.0)
FLAIR_MIN_TI_MS = 1500.0
T1_MAX_TR_MS = 1000.0
T1_MAX_TE_MS = 30.0
LONG_TR_MS = 1500.0
T2_MIN_TE_MS = 60.0
PD_MAX_TE_MS = 50.0

_TEXT_FIELDS = ("SeriesDescription", "ProtocolName", "SequenceName", "PulseSequenceName")


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_FS_TEXT = _rx(
    r"(?<![a-z])(?:pd|pdw|t2|t2w|t1|t1w|tse|fse|se)?[\s_-]?(fs|fatsat|fat[\s_-]?sat(?:uration)?"
    r"|fsat|spair|spir|chess|fat[\s_-]?supp(?:ression|ressed)?)(?![a-z])"
)
_NO_FS_TEXT = _rx(r"(?<![a-z])(nfs|non[\s_-]?fs|no[\s_-]?fs|wo[\s_-]?fs|no[\s_-]?fat[\s_-]?sat)(?![a-z])")
_STIR_TEXT = _rx(r"(?<![a-z])(stir|tirm)")
_FLAIR_TEXT = _rx(r"flair|dark[\s_-]?fluid")
_T1_TEXT = _rx(r"(?<![a-z0-9])t1(?![0-9])")
_T2_TEXT = _rx(r"(?<![a-z0-9])t2(?![0-9*]|[\s_-]?star)")
_PD_TEXT = _rx(r"(?<![a-z])(pd|pdw|pdfs|proton[\s_-]?density)(?![a-z])")
_LOCALIZER_TEXT = _rx(
    r"locali[sz]er|scout|survey|tri[\s_-]?pilot|3[\s_-]?plane|(?<![a-z])loc(?![a-z])"
    r"|(?<![a-z])pilot|aahead"
)
_DIFFUSION_TEXT = _rx(r"(?<![a-z])(dwi|diff\w*|dti|trace\w*)(?![a-z])")
_ADC_TEXT = _rx(r"(?<![a-z])adc(?![a-z])|apparent[\s_-]?diffusion")
_DIXON_TEXT = _rx(
    r"dixon|(?<![a-z])(ideal|flex)(?![a-z])"
    r"|^\s*(water|fat|inphase|in[\s_-]phase|outphase|out[\s_-]phase|opp\w*)\s*:"
)
_DIXON_PART_TEXT: tuple[tuple[SeriesKind, re.Pattern[str]], ...] = (
    (SeriesKind.DIXON_OPPOSED_PHASE,
     _rx(r"(?<![a-z0-9])(opp|op|oop|out|outphase|out[\s_-]?of[\s_-]?phase|out[\s_-]phase"
         r"|opposed[\s_-]?phase|opp[\s_-]?phase)(?![a-z0-9])")),
    (SeriesKind.DIXON_IN_PHASE, _rx(r"(?<![a-z0-9])(in|ip|inphase|in[\s_-]phase)(?![a-z0-9])")),
    (SeriesKind.DIXON_WATER, _rx(r"(?<![a-z0-9])(w|water)(?![a-z0-9])")),
    (SeriesKind.DIXON_FAT, _rx(r"(?<![a-z0-9])(f|fat)(?![a-z0-9])")),
)
_DERIVED_TEXT = _rx(r"(?<![a-z])(mpr|mip|minip|mnip|sub|subtraction|reformat\w*)(?![a-z])")
_POST_TEXT = _rx(r"(?<![a-z])(post|gd|gad|gado\w*|kmp|km)(?![a-z])|c\+|\+c(?![a-z])")
_PRE_TEXT = _rx(r"(?<![a-z])(pre|nativ|native)(?![a-z])")

_DIXON_IMAGE_TYPE: dict[str, SeriesKind] = {
    "WATER": SeriesKind.DIXON_WATER,
    "FAT": SeriesKind.DIXON_FAT,
    "IN_PHASE": SeriesKind.DIXON_IN_PHASE,
    "OPP_PHASE": SeriesKind.DIXON_OPPOSED_PHASE,
    "OUT_PHASE": SeriesKind.DIXON_OPPOSED_PHASE,
    "OPPOSED_PHASE": SeriesKind.DIXON_OPPOSED_PHASE,
}
# Philips mDIXON single-letter ImageType tokens; only trusted with other Dixon evidence.
_DIXON_SHORT_IMAGE_TYPE: dict[str, SeriesKind] = {
    "W": SeriesKind.DIXON_WATER,
    "F": SeriesKind.DIXON_FAT,
    "IP": SeriesKind.DIXON_IN_PHASE,
    "OP": SeriesKind.DIXON_OPPOSED_PHASE,
}
_DERIVED_IMAGE_TYPE = frozenset(
    {"MPR", "CSA MPR", "SUB", "SUBTRACTION", "PROJECTION IMAGE", "PROJECTION", "MIP", "MNIP",
     "MINIP", "REFORMATTED", "CSA RESAMPLED", "RESAMPLED", "CPR", "VOLUME_RENDER"}
)
_ENHANCED_CONTRAST: dict[str, SeriesKind] = {
    "T1": SeriesKind.T1,
    "T2": SeriesKind.T2,
    "PROTON_DENSITY": SeriesKind.PD,
    "STIR": SeriesKind.STIR,
    "FLUID_ATTENUATED": SeriesKind.FLAIR,
    "DIFFUSION": SeriesKind.DIFFUSION,
}
_NO_CONTRAST_AGENT = frozenset({"", "NONE", "NO", "N/A", "NA", "0"})
_FAT_SUPPRESSED_KINDS = frozenset(
    {SeriesKind.STIR, SeriesKind.T2_FS, SeriesKind.PD_FS, SeriesKind.DIXON_WATER}
)


# ---------------------------------------------------------------- header access


def plane_from_orientation(iop: Sequence[float]) -> tuple[Plane, float, str]:
    """Plane (nearest of sagittal/coronal/axial, or oblique), obliquity in degrees, evidence.

    The slice normal n = row x col; coronal when n ~ +-Y, axial ~ +-Z, sagittal ~ +-X. Within
    ``OBLIQUE_TOLERANCE_DEG`` of the nearest axis the nearest plane is kept and the
    obliquity recorded; beyond it the plane is OBLIQUE.
    """
    row, col = iop[:3], iop[3:]
    n = (
        row[1] * col[2] - row[2] * col[1],
        row[2] * col[0] - row[0] * col[2],
        row[0] * col[1] - row[1] * col[0],
    )
    norm = math.sqrt(sum(c * c for c in n))
    if norm < 1e-6:
        return Plane.UNKNOWN, 0.0, "ImageOrientationPatient row and column are parallel"
    unit = [c / norm + 0.0 for c in n]  # + 0.0: no "-0.00" in evidence
    axis = max(range(3), key=lambda i: abs(unit[i]))
    nearest = (Plane.SAGITTAL, Plane.CORONAL, Plane.AXIAL)[axis]
    angle = math.degrees(math.acos(min(1.0, abs(unit[axis]))))
    normal_txt = "slice normal ({:.2f}, {:.2f}, {:.2f})".format(*unit)
    if angle > OBLIQUE_TOLERANCE_DEG:
        return (
            Plane.OBLIQUE,
            angle,
            f"{normal_txt} is {angle:.1f} deg from {nearest} (> {OBLIQUE_TOLERANCE_DEG:g} deg): oblique",
        )
    if angle > 1.0:
        return nearest, angle, f"{normal_txt}: {nearest}, oblique by {angle:.1f} deg"
    return nearest, angle, f"{normal_txt}: {nearest}"


# ---------------------------------------------------------------- features


@dataclass
class _Features:
    text: dict[str, str]
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...]
    image_type: tuple[str, ...]
    tr: float | None
    te: float | None
    ti: float | None
    flip: float | None
    field_t: float | None
    enhanced_ir: str | None
    spectral_suppression: str | None
    spectral_excitation: str | None
    acquisition_contrast: str | None
    contrast_agent: str | None
    b_value: float | None
    orientations: list[tuple[float, ...]] = field(default_factory=list)

    def find(self, pattern: re.Pattern[str], group: int = 0) -> str | None:
        """Evidence string for the first text field matching ``pattern``."""
        for name, value in self.text.items():
            match = pattern.search(value)
            if match:
                return f"{name} contains '{(match.group(group) or match.group(0)).strip()}'"
        return None


def _features(datasets: Sequence[Dataset]) -> _Features:
    first = datasets[0]
    text = {
        name: str(first.get(name, "") or "").strip().lower()
        for name in _TEXT_FIELDS
        if str(first.get(name, "") or "").strip()
    }
    timing = functional_group_item(first, "MRTimingAndRelatedParametersSequence")
    echo = functional_group_item(first, "MREchoSequence")
    modifier = functional_group_item(first, "MRModifierSequence")
    frame_type = functional_group_item(first, "MRImageFrameTypeSequence")
    diffusion = functional_group_item(first, "MRDiffusionSequence")

    tr = number(first.get("RepetitionTime"))
    if tr is None and timing is not None:
        tr = number(timing.get("RepetitionTime"))
    te = number(first.get("EchoTime"))
    if te is None and echo is not None:
        te = number(echo.get("EffectiveEchoTime"))
    ti = number(first.get("InversionTime"))
    if ti is None and modifier is not None:
        ti = number(modifier.get("InversionTimes"))
    flip = number(first.get("FlipAngle"))
    if flip is None and timing is not None:
        flip = number(timing.get("FlipAngle"))
    b_value = number(first.get("DiffusionBValue"))
    if b_value is None and diffusion is not None:
        b_value = number(diffusion.get("DiffusionBValue"))

    image_type = tokens(first.get("ImageType"))
    if frame_type is not None:
        image_type = image_type + tokens(frame_type.get("FrameType"))
    contrast = str(first.get("AcquisitionContrast", "") or "").upper() or None
    if contrast is None and frame_type is not None:
        contrast = str(frame_type.get("AcquisitionContrast", "") or "").upper() or None

    agent = str(first.get("ContrastBolusAgent", "") or "").strip() or None
    usage = first.get("ContrastBolusUsageSequence")
    if agent is None and usage:
        administered = [str(item.get("ContrastBolusAgentAdministered", "")).upper() for item in usage]
        agent = "ContrastBolusUsageSequence administered" if "YES" in administered else None

    orientations: list[tuple[float, ...]] = []
    for ds in datasets:
        n_frames = int(number(ds.get("NumberOfFrames")) or 1)
        for index in range(n_frames if ds.get("PerFrameFunctionalGroupsSequence") else 1):
            iop = orientation_of(ds, index)
            if iop is not None and not any(same_orientation(iop, o) for o in orientations):
                orientations.append(iop)

    return _Features(
        text=text,
        scanning_sequence=tokens(first.get("ScanningSequence")),
        sequence_variant=tokens(first.get("SequenceVariant")),
        scan_options=tokens(first.get("ScanOptions")),
        image_type=image_type,
        tr=tr,
        te=te,
        ti=ti,
        flip=flip,
        field_t=number(first.get("MagneticFieldStrength")),
        enhanced_ir=None if modifier is None else str(modifier.get("InversionRecovery", "") or "").upper() or None,
        spectral_suppression=str(first.get("SpectrallySelectedSuppression", "") or "").upper() or None,
        spectral_excitation=str(first.get("SpectrallySelectedExcitation", "") or "").upper() or None,
        acquisition_contrast=contrast,
        contrast_agent=agent,
        b_value=b_value,
        orientations=orientations,
    )


# ---------------------------------------------------------------- rules


def _inversion_recovery(f: _Features) -> list[str]:
    evidence: list[str] = []
    if "IR" in f.scanning_sequence:
        evidence.append("ScanningSequence=" + "\\".join(f.scanning_sequence))
    for token in ("IR", "IR_GEMS"):
        if token in f.scan_options:
            evidence.append(f"ScanOptions contains {token}")
    if f.enhanced_ir == "YES":
        evidence.append("MRModifierSequence InversionRecovery=YES")
    seq_name = f.text.get("SequenceName", "")
    if re.search(r"(^|\*)tir", seq_name):
        evidence.append(f"SequenceName {seq_name} (Siemens inversion recovery)")
    if not evidence and f.ti is not None and f.ti > 0:
        evidence.append(f"InversionTime={f.ti:g}ms present (inversion recovery)")
    return evidence


def _fat_suppression(f: _Features) -> tuple[bool, list[str]]:
    evidence: list[str] = []
    if "FS" in f.scan_options:
        evidence.append("ScanOptions contains FS")
    if f.spectral_suppression in ("FAT", "FAT_AND_WATER"):
        evidence.append(f"SpectrallySelectedSuppression={f.spectral_suppression}")
    if f.spectral_excitation == "WATER":
        evidence.append("SpectrallySelectedExcitation=WATER (water excitation)")
    header_fs = bool(evidence)
    negated = f.find(_NO_FS_TEXT)
    text = None if negated else f.find(_FS_TEXT, group=1)
    if text:
        evidence.append(text)
    if "SAT_GEMS" in f.scan_options and not evidence:
        evidence.append("ScanOptions contains SAT_GEMS only (GE saturation, not specific for fat)")
        return False, evidence
    if negated and not header_fs:
        evidence.append(negated + " (no fat suppression)")
        return False, evidence
    return bool(header_fs or text), evidence


def _dixon(f: _Features) -> tuple[SeriesKind | None, list[str]]:
    evidence: list[str] = []
    for token in f.image_type:
        if token in _DIXON_IMAGE_TYPE:
            return _DIXON_IMAGE_TYPE[token], [f"ImageType contains {token}"]
    text = f.find(_DIXON_TEXT)
    if "DIXON" in f.image_type:
        evidence.append("ImageType contains DIXON")
    if text:
        evidence.append(text)
    if not evidence:
        return None, []
    for token in f.image_type:
        if token in _DIXON_SHORT_IMAGE_TYPE:
            return _DIXON_SHORT_IMAGE_TYPE[token], [*evidence, f"ImageType contains {token}"]
    for kind, pattern in _DIXON_PART_TEXT:
        part = f.find(pattern)
        if part:
            return kind, [*evidence, part]
    return None, [*evidence, "Dixon component (water/fat/in/opposed) not identified"]


def _field_note(ti: float, field_t: float | None) -> str:
    if field_t is None:
        return f"TI={ti:g}ms (STIR range {STIR_TI_MS[0]:g}-{STIR_TI_MS[1]:g} ms)"
    typical = (100.0, 200.0) if field_t < 2.0 else (150.0, 260.0)
    where = "typical" if typical[0] <= ti <= typical[1] else "atypical"
    return f"TI={ti:g}ms (STIR range at {field_t:g}T, {where})"


def _by_inversion(f: _Features, ir: list[str]) -> tuple[SeriesKind, list[str]]:
    stir_text = f.find(_STIR_TEXT)
    flair_text = f.find(_FLAIR_TEXT)
    if f.ti is None:
        if flair_text:
            return SeriesKind.FLAIR, [*ir, "TI missing", flair_text]
        if stir_text:
            return SeriesKind.STIR, [*ir, "TI missing", stir_text]
        return SeriesKind.UNKNOWN, [*ir, "inversion recovery without InversionTime"]
    if STIR_TI_MS[0] <= f.ti <= STIR_TI_MS[1]:
        return SeriesKind.STIR, [*ir, _field_note(f.ti, f.field_t), *([stir_text] if stir_text else [])]
    if f.ti >= FLAIR_MIN_TI_MS:
        return SeriesKind.FLAIR, [*ir, f"TI={f.ti:g}ms (long TI: fluid attenuated)"]
    return SeriesKind.UNKNOWN, [
        *ir,
        f"TI={f.ti:g}ms: neither STIR ({STIR_TI_MS[0]:g}-{STIR_TI_MS[1]:g} ms) "
        f"nor FLAIR (>= {FLAIR_MIN_TI_MS:g} ms)",
    ]


def _by_timing(f: _Features) -> tuple[SeriesKind | None, list[str]]:
    if f.tr is None or f.te is None:
        return None, []
    timing = f"TR={f.tr:g}ms TE={f.te:g}ms"
    if f.tr <= T1_MAX_TR_MS and f.te <= T1_MAX_TE_MS:
        gradient = "GR" in f.scanning_sequence
        if gradient and f.te >= 10.0 and f.flip is not None and f.flip <= 35.0:
            return SeriesKind.UNKNOWN, [f"{timing} FA={f.flip:g} gradient echo: T2*-weighted"]
        return SeriesKind.T1, [f"{timing} (short TR, short TE: T1-weighted)"]
    if f.tr >= LONG_TR_MS:
        if f.te >= T2_MIN_TE_MS:
            return SeriesKind.T2, [f"{timing} (long TR, long TE: T2-weighted)"]
        if f.te <= PD_MAX_TE_MS:
            return SeriesKind.PD, [f"{timing} (long TR, short TE: PD-weighted)"]
        pd_text, t2_text = f.find(_PD_TEXT), f.find(_T2_TEXT)
        if pd_text and not t2_text:
            return SeriesKind.PD, [f"{timing} (intermediate TE)", pd_text]
        return SeriesKind.T2, [f"{timing} (intermediate TE, taken as T2-weighted)"]
    return SeriesKind.UNKNOWN, [f"{timing}: intermediate weighting"]


def _by_text(f: _Features) -> tuple[SeriesKind | None, list[str]]:
    if f.acquisition_contrast in _ENHANCED_CONTRAST:
        return _ENHANCED_CONTRAST[f.acquisition_contrast], [
            f"AcquisitionContrast={f.acquisition_contrast}"
        ]
    for kind, pattern in (
        (SeriesKind.STIR, _STIR_TEXT),
        (SeriesKind.FLAIR, _FLAIR_TEXT),
        (SeriesKind.PD, _PD_TEXT),
        (SeriesKind.T2, _T2_TEXT),
        (SeriesKind.T1, _T1_TEXT),
    ):
        text = f.find(pattern)
        if text:
            return kind, [text, "TR/TE not available: decided from text"]
    return None, []


def _excluded_kind(f: _Features) -> tuple[SeriesKind | None, list[str]]:
    """Localizer, diffusion/ADC, derived, post-contrast: the series not to analyse."""
    if len(f.orientations) > 1:
        return SeriesKind.LOCALIZER, [f"{len(f.orientations)} orientations in one series"]
    if "LOCALIZER" in f.image_type:
        return SeriesKind.LOCALIZER, ["ImageType contains LOCALIZER"]
    text = f.find(_LOCALIZER_TEXT)
    if text:
        return SeriesKind.LOCALIZER, [text]
    if "ADC" in f.image_type:
        return SeriesKind.ADC, ["ImageType contains ADC"]
    text = f.find(_ADC_TEXT)
    if text:
        return SeriesKind.ADC, [text]
    diffusion: list[str] = []
    if f.b_value is not None and f.b_value > 0:
        diffusion.append(f"DiffusionBValue={f.b_value:g}")
    diffusion.extend(f"ImageType contains {t}" for t in ("DIFFUSION", "TRACEW") if t in f.image_type)
    if f.acquisition_contrast == "DIFFUSION":
        diffusion.append("AcquisitionContrast=DIFFUSION")
    text = f.find(_DIFFUSION_TEXT)
    if text and ("EP" in f.scanning_sequence or diffusion):
        diffusion.append(text)
    if diffusion:
        return SeriesKind.DIFFUSION, diffusion
    if f.image_type and f.image_type[0] == "DERIVED":
        derived = [t for t in f.image_type if t in _DERIVED_IMAGE_TYPE]
        if derived:
            agent_note = [f"ContrastBolusAgent={f.contrast_agent}"] if f.contrast_agent else []
            return SeriesKind.DERIVED, ["ImageType DERIVED with " + "/".join(derived), *agent_note]
    text = f.find(_DERIVED_TEXT)
    if text:
        return SeriesKind.DERIVED, [text]
    pre = f.find(_PRE_TEXT)
    agent = f.contrast_agent
    if agent is not None and agent.upper() not in _NO_CONTRAST_AGENT and not pre:
        return SeriesKind.POST_CONTRAST, [f"ContrastBolusAgent={agent}"]
    text = f.find(_POST_TEXT)
    if text and not pre:
        return SeriesKind.POST_CONTRAST, [text]
    return None, []


def _series_plane(f: _Features) -> tuple[Plane, list[str]]:
    if not f.orientations:
        return Plane.UNKNOWN, ["no ImageOrientationPatient"]
    plane, _, evidence = plane_from_orientation(f.orientations[0])
    return plane, [evidence]


def _kind(f: _Features) -> tuple[SeriesKind, bool, list[str]]:
    kind, evidence = _excluded_kind(f)
    if kind is not None:
        fs, fs_evidence = _fat_suppression(f)
        return kind, fs, evidence + (fs_evidence if fs else [])
    kind, evidence = _dixon(f)
    if kind is not None:
        return kind, kind is SeriesKind.DIXON_WATER, evidence
    ir = _inversion_recovery(f)
    if ir:
        kind, evidence = _by_inversion(f, ir)
        return kind, kind is SeriesKind.STIR, evidence
    stir_text = f.find(_STIR_TEXT)
    if stir_text and f.ti is None:
        return SeriesKind.STIR, True, [stir_text, "no inversion flags and no TI: decided from text"]
    if stir_text and f.ti is not None and STIR_TI_MS[0] <= f.ti <= STIR_TI_MS[1]:
        return SeriesKind.STIR, True, [stir_text, _field_note(f.ti, f.field_t)]
    kind, evidence = _by_timing(f)
    if kind is None:
        kind, evidence = _by_text(f)
        if kind is SeriesKind.STIR:
            return kind, True, evidence
    if kind is None:
        return SeriesKind.UNKNOWN, False, ["no TR/TE and no recognised description"]
    fs, fs_evidence = _fat_suppression(f)
    if kind is SeriesKind.T2 and fs:
        kind = SeriesKind.T2_FS
    elif kind is SeriesKind.PD and fs:
        kind = SeriesKind.PD_FS
    return kind, fs, evidence + fs_evidence


def classify_series(
    datasets: Sequence[Dataset], orientation: Sequence[float] | None = None
) -> Classification:
    """Kind and plane of one series from its headers (classic or Enhanced MR), with evidence.

    ``orientation`` (IOP of one stack) fixes the plane when the caller has already split the
    series into single-orientation stacks; mixed orientations are then not a localizer sign.
    """
    if not datasets:
        return Classification(SeriesKind.UNKNOWN, Plane.UNKNOWN, ("no datasets",))
    f = _features(datasets)
    if orientation is not None:
        f.orientations = [tuple(float(v) for v in orientation)]
    kind, fat_suppressed, evidence = _kind(f)
    plane, plane_evidence = _series_plane(f)
    return Classification(
        kind=kind,
        plane=plane,
        evidence=tuple(_unique(evidence + plane_evidence)),
        fat_suppressed=fat_suppressed or kind in _FAT_SUPPRESSED_KINDS,
    )


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
