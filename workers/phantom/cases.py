"""The phantom cases (pathology and visit), acquisition variants and patient identities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workers.phantom.anatomy import Anatomy
from workers.phantom.pathology import NORMAL_SIDE, OedemaSpec, SidePathology

CASES: tuple[str, ...] = (
    "normal", "itoh_left", "itoh_right", "bilateral", "avn_left",
    "followup_resolved", "followup_improved",
)

VARIANTS: tuple[str, ...] = (
    "axial_only", "oblique", "feet_first", "mismatched_grids", "enhanced_stir",
    "jpeg2000", "jpegls", "rle", "siemens", "ge", "philips", "low_res", "noisy",
    "fat_sat_failure", "nonascii_name", "nonascii_utf8", "other_patient", "localizer",
    "motion", "wrap",
    # real hip protocols (issue 11; workers/phantom/situations.py)
    "one_hip_left", "one_hip_right", "arthroplasty_left", "arthroplasty_right", "axial_stir",
    "pd_fs_3d", "dixon", "gapped", "partial_coverage", "coil_shading", "t1_shifted", "repacked_12bit",
)

_EXCLUSIVE = (
    ("jpeg2000", "jpegls", "rle"),
    ("siemens", "ge", "philips"),
    ("motion", "wrap"),
    ("one_hip_left", "one_hip_right"),
    ("arthroplasty_left", "arthroplasty_right"),
    # each replaces the coronal STIR by another fluid-sensitive series
    ("axial_only", "axial_stir", "pd_fs_3d", "dixon"),
    ("gapped", "partial_coverage"),
)
#: (variant, the variants it cannot be combined with, why)
_CONFLICTS = (
    ("axial_only", ("oblique", "mismatched_grids", "enhanced_stir"),
     "axial_only has no coronal series to tilt, mismatch or enhance"),
    ("axial_only", ("motion", "wrap"),
     "motion and wrap corrupt the coronal fluid-sensitive series; axial_only has none"),
    ("wrap", ("mismatched_grids",),
     "wrap sets its own (too small) field of view; it cannot be combined with mismatched_grids"),
    ("axial_only", ("gapped", "partial_coverage", "t1_shifted"),
     "axial_only has no coronal stack to thin and both of its series are acquired together"),
    ("one_hip_left", ("mismatched_grids", "wrap"), "one_hip sets its own field of view"),
    ("one_hip_right", ("mismatched_grids", "wrap"), "one_hip sets its own field of view"),
    ("axial_stir", ("enhanced_stir", "motion", "wrap", "mismatched_grids"),
     "the coronal STIR these act on is replaced by an axial one"),
    ("pd_fs_3d", ("enhanced_stir", "motion", "wrap", "mismatched_grids", "oblique"),
     "the coronal STIR these act on is replaced by a 3D PD FS series"),
    ("dixon", ("enhanced_stir", "motion", "wrap", "mismatched_grids", "fat_sat_failure"),
     "the coronal STIR these act on is replaced by Dixon water and fat images"),
)


class PhantomError(ValueError):
    """An unknown case or variant, or variants that cannot be combined."""


@dataclass(frozen=True)
class PatientIdentity:
    """The fake patient written into every instance."""

    name: str
    patient_id: str
    issuer: str = "MARROWMAP-PHANTOM"
    birth_date: str = "19680412"
    sex: str = "F"
    charset: str = "ISO_IR 100"


def default_identity(seed: int, variants: Sequence[str] = ()) -> PatientIdentity:
    """The identity of the patient of ``seed``; ``other_patient`` keeps the name, changes the ID."""
    name, charset = "PHANTOM^HIP", "ISO_IR 100"
    if "nonascii_name" in variants:
        name = "Müller^Jürgen"
    if "nonascii_utf8" in variants:
        name, charset = "Иванов^Пётр=Ηλίας^Δημήτρης", "ISO_IR 192"
    if "other_patient" in variants:
        return PatientIdentity(name=name, patient_id=f"MM-{seed}-B", birth_date="19750923",
                               sex="F", charset=charset)
    return PatientIdentity(name=name, patient_id=f"MM-{seed}", charset=charset)


@dataclass(frozen=True)
class Visit:
    """When the study happened (fixed dates: the generator must be deterministic)."""

    study_date: str
    study_time: str
    accession_suffix: str


BASELINE = Visit("20260302", "091500", "A")
VISITS = {
    "followup_resolved": Visit("20261005", "103000", "R"),
    "followup_improved": Visit("20260608", "141500", "I"),
}


def check_request(case: str, variants: Sequence[str]) -> tuple[str, ...]:
    """Validate a case and its variants; returns the variants sorted and de-duplicated."""
    if case not in CASES:
        raise PhantomError(f"unknown case {case!r}; expected one of {', '.join(CASES)}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise PhantomError(f"unknown variant(s) {unknown}; expected from {', '.join(VARIANTS)}")
    chosen = tuple(sorted(set(variants)))
    for group in _EXCLUSIVE:
        hit = [v for v in chosen if v in group]
        if len(hit) > 1:
            raise PhantomError(f"variants {hit} cannot be combined")
    if "nonascii_name" in chosen and "nonascii_utf8" in chosen:
        raise PhantomError("variants nonascii_name and nonascii_utf8 cannot be combined")
    for variant, others, why in _CONFLICTS:
        if variant in chosen and any(o in chosen for o in others):
            raise PhantomError(why)
    return chosen


def pathology(case: str, anat: Anatomy, seed: int) -> dict[str, SidePathology]:
    """Per side pathology of a case, with small seed-dependent variation."""
    rng = np.random.default_rng([seed, sum(map(ord, case))])
    jitter = float(rng.uniform(-3.0, 3.0))
    amp = float(rng.uniform(0.86, 0.96))

    def itoh(side: str, into_intertrochanteric: bool = False) -> SidePathology:
        fem = anat.femur(side)
        distal = (fem.neck_length + 6.0 if into_intertrochanteric else fem.neck_end - 3.0) + jitter
        return SidePathology(OedemaSpec("diffuse", amplitude=amp, distal_mm=distal,
                                        medial_sparing=0.85),
                             effusion_mm=float(rng.uniform(2.2, 3.2)))

    if case in ("normal", "followup_resolved"):
        return {"right": NORMAL_SIDE, "left": NORMAL_SIDE}
    if case == "itoh_left":
        return {"right": NORMAL_SIDE, "left": itoh("left")}
    if case == "itoh_right":
        return {"right": itoh("right"), "left": NORMAL_SIDE}
    if case == "bilateral":
        return {"right": itoh("right"), "left": itoh("left", into_intertrochanteric=True)}
    if case == "avn_left":
        return {"right": NORMAL_SIDE,
                "left": SidePathology(OedemaSpec("focal", amplitude=0.85, halo_mm=6.0), avn=True)}
    if case == "followup_improved":
        # same patient as itoh_left, months later: oedema shrunk back to the head and proximal neck
        fem = anat.left
        base = np.random.default_rng([seed, sum(map(ord, "itoh_left"))])
        base_jitter = float(base.uniform(-3.0, 3.0))
        distal = fem.head_neck_junction + 0.2 * (fem.neck_end - fem.head_neck_junction) + base_jitter
        return {"right": NORMAL_SIDE,
                "left": SidePathology(OedemaSpec("diffuse", amplitude=0.8, distal_mm=distal,
                                                 medial_sparing=1.0, spare_from=-0.2),
                                      effusion_mm=1.2)}
    raise PhantomError(f"unknown case {case!r}")


def fat_sat_failure_side(sides: dict[str, SidePathology]) -> str:
    """The hip whose marrow the failed fat suppression covers: an unaffected one when possible."""
    if sides["left"].oedema is None:
        return "left"
    if sides["right"].oedema is None:
        return "right"
    return "left"
