"""Tissues of the phantom and their MR signal at 1.5 T.

Each tissue is a water compartment and a fat compartment. Signal is computed per
compartment from the sequence's TR/TE/TI and summed, so fat suppression (STIR
inversion nulling, spectral fat saturation) acts on the fat part only.
Relaxation times are typical published 1.5 T values (Gold 2004, Bottomley 1984,
de Bazelaire 2004), rounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

FAT_T1_MS = 230.0  # TI = ln2 * 230 = 160 ms nulls fat at long TR
FAT_T2_MS = 85.0  # apparent fat T2 on TSE (J-coupling decoupling keeps fat bright)


class Tissue(IntEnum):
    AIR = 0
    SKIN = 1
    FAT = 2
    MUSCLE = 3
    PELVIC_FAT = 4
    URINE = 5
    BOWEL = 6
    BOWEL_FLUID = 7
    GAS = 8
    ARTERY = 9
    VEIN = 10
    CORTEX = 11
    YELLOW_MARROW = 12
    RED_MARROW = 13
    CARTILAGE = 14
    CAPSULE = 15
    LABRUM = 16
    JOINT_FLUID = 17
    OEDEMA_MARROW = 18
    NECROTIC_MARROW = 19
    SCLEROTIC_RIM = 20
    GRANULATION = 21
    MARKER = 22
    DISC = 23
    NERVE = 24
    TENDON = 25
    METAL = 26  # arthroplasty: CoCr head and stem, titanium cup
    POLYMER = 27  # arthroplasty: polyethylene liner, bone cement


@dataclass(frozen=True)
class TissueParams:
    """Proton density (relative), fat fraction, water-compartment T1/T2 (ms)."""

    pd: float
    fat_fraction: float
    t1_ms: float
    t2_ms: float


TISSUES: dict[Tissue, TissueParams] = {
    Tissue.AIR: TissueParams(0.0, 0.0, 1000.0, 1.0),
    Tissue.SKIN: TissueParams(0.75, 0.1, 800.0, 35.0),
    Tissue.FAT: TissueParams(1.0, 0.92, 900.0, 50.0),
    Tissue.MUSCLE: TissueParams(0.78, 0.04, 870.0, 42.0),
    Tissue.PELVIC_FAT: TissueParams(1.0, 0.9, 900.0, 50.0),
    Tissue.URINE: TissueParams(1.0, 0.0, 3000.0, 1200.0),
    Tissue.BOWEL: TissueParams(0.8, 0.05, 1000.0, 60.0),
    Tissue.BOWEL_FLUID: TissueParams(0.9, 0.0, 1800.0, 220.0),
    Tissue.GAS: TissueParams(0.0, 0.0, 1000.0, 1.0),
    Tissue.ARTERY: TissueParams(0.06, 0.0, 1400.0, 200.0),  # flow void
    Tissue.VEIN: TissueParams(0.75, 0.0, 1400.0, 160.0),  # slow flow, bright on T2/STIR
    Tissue.CORTEX: TissueParams(0.04, 0.0, 1000.0, 2.0),
    Tissue.YELLOW_MARROW: TissueParams(0.88, 0.86, 900.0, 45.0),
    Tissue.RED_MARROW: TissueParams(0.82, 0.55, 850.0, 45.0),
    Tissue.CARTILAGE: TissueParams(0.72, 0.0, 1050.0, 38.0),
    Tissue.CAPSULE: TissueParams(0.25, 0.0, 900.0, 12.0),
    Tissue.LABRUM: TissueParams(0.12, 0.0, 900.0, 8.0),
    Tissue.JOINT_FLUID: TissueParams(1.0, 0.0, 2800.0, 700.0),
    # Marrow oedema: water-rich marrow, fat largely displaced (mixed with normal marrow by fraction).
    Tissue.OEDEMA_MARROW: TissueParams(0.95, 0.12, 1250.0, 95.0),
    Tissue.NECROTIC_MARROW: TissueParams(0.86, 0.8, 900.0, 40.0),  # early AVN keeps fat signal
    Tissue.SCLEROTIC_RIM: TissueParams(0.08, 0.0, 1000.0, 5.0),
    Tissue.GRANULATION: TissueParams(0.95, 0.05, 1200.0, 140.0),
    Tissue.MARKER: TissueParams(1.0, 0.0, 160.0, 300.0),  # Gd-doped water capsule
    Tissue.DISC: TissueParams(0.85, 0.0, 1100.0, 90.0),
    Tissue.NERVE: TissueParams(0.8, 0.15, 1000.0, 70.0),
    Tissue.TENDON: TissueParams(0.08, 0.0, 900.0, 5.0),
    Tissue.METAL: TissueParams(0.0, 0.0, 1000.0, 1.0),  # no protons: signal void
    Tissue.POLYMER: TissueParams(0.0, 0.0, 1000.0, 1.0),  # solid, T2 of microseconds: void
}
DIXON_LEAK = 0.03  # fraction of the other compartment left in a Dixon water or fat image

# Fat fraction of each label, used to localise fat-suppression failure.
FAT_FRACTION = np.array([TISSUES[t].fat_fraction for t in Tissue], dtype=np.float32)


@dataclass(frozen=True)
class SequenceTiming:
    """What the signal model needs from a sequence."""

    kind: str  # "se" | "stir" | "fs"  (fs = spectral fat saturation on SE/TSE)
    tr_ms: float
    te_ms: float
    ti_ms: float = 0.0
    fat_suppression: float = 0.0  # fraction of fat signal removed by spectral saturation
    dixon: str = ""  # "water" | "fat": the Dixon-separated component image ("" = not Dixon)


def _compartment(pd: NDArray[np.float32] | float, t1: NDArray[np.float32] | float,
                 t2: NDArray[np.float32] | float, seq: SequenceTiming) -> NDArray[np.float32]:
    e_tr = np.exp(-seq.tr_ms / np.asarray(t1, np.float32))
    e_te = np.exp(-seq.te_ms / np.asarray(t2, np.float32))
    if seq.kind == "stir":
        mz = np.abs(1.0 - 2.0 * np.exp(-seq.ti_ms / np.asarray(t1, np.float32)) + e_tr)
    else:
        mz = 1.0 - e_tr
    return np.asarray(pd * mz * e_te, np.float32)


def water_signal(params: TissueParams, seq: SequenceTiming) -> float:
    """Signal of the water compartment of a tissue."""
    return float(_compartment(params.pd * (1.0 - params.fat_fraction), params.t1_ms,
                              params.t2_ms, seq))


def fat_signal(params: TissueParams, seq: SequenceTiming) -> float:
    """Signal of the fat compartment of a tissue, before spectral fat saturation."""
    return float(_compartment(params.pd * params.fat_fraction, FAT_T1_MS, FAT_T2_MS, seq))


def tissue_signal(params: TissueParams, seq: SequenceTiming) -> float:
    """Total signal of a tissue for a sequence, with its nominal fat suppression; a Dixon
    component image keeps its compartment and ``DIXON_LEAK`` of the other."""
    water, fat = water_signal(params, seq), fat_signal(params, seq)
    if seq.dixon == "water":
        return water + DIXON_LEAK * fat
    if seq.dixon == "fat":
        return fat + DIXON_LEAK * water
    return water + (1.0 - seq.fat_suppression) * fat


def signal_table(seq: SequenceTiming) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Per-label (nominal signal, unsuppressed fat signal) lookup tables."""
    total = np.array([tissue_signal(TISSUES[t], seq) for t in Tissue], np.float32)
    fat = np.array([fat_signal(TISSUES[t], seq) for t in Tissue], np.float32)
    return total, fat
