"""Phantom B: the independently written hip MRI generator in ``<repo>/../shared/phantom-b``.

It is never copied into the project: it runs as a subprocess of this interpreter
(``python phantom_b.py OUT --case NAME --seed N --quiet``) and writes ``OUT/dicom/S<nr>/*.dcm``,
``OUT/truth.json`` and ``OUT/truth_oedema.nii.gz`` (1 = right femur oedema, 2 = left, STIR grid).
Used by the tests (``phantom_b_study``) and by ``benchmarks/accuracy.py``; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: The generator script; ``MARROWMAP_PHANTOM_B`` overrides the default next to the repository.
PHANTOM_B = Path(
    os.environ.get("MARROWMAP_PHANTOM_B")
    or Path(__file__).resolve().parents[2] / "shared" / "phantom-b" / "phantom_b.py"
)
#: Every case phantom B knows ("ITOH" cases take the oedema side from the seed: read the truth).
PHANTOM_B_CASES: tuple[str, ...] = (
    "itoh_left", "itoh_right", "normal", "bilateral", "avn_left", "axial_only",
    "oblique", "offset", "enhanced", "jpeg2000", "jpegls", "noisy_lowres",
)
SKIP_STATUS = 3  # exit status of phantom_b.py when a codec for the case is missing
GENERATE_TIMEOUT_S = 900.0


class PhantomBSkipped(Exception):
    """Phantom B skipped the case (exit status 3: an encoder it needs is not installed)."""


@dataclass(frozen=True)
class PhantomBSide:
    """What is true about one hip (``truth.json`` ``sides.<side>``)."""

    present: bool
    pattern: str  # "diffuse" | "focal" | "none"
    volume_ml: float  # oedema_volume_ml: continuous model (0.5 mm grid)
    mask_volume_ml: float  # oedema_mask_volume_ml: the voxel label mask on the STIR grid
    effusion: bool
    head_centre_lps_mm: tuple[float, float, float]
    neck_axis_lps: tuple[float, float, float]  # unit, from the neck base towards the head


@dataclass(frozen=True)
class PhantomBTruth:
    """One generated phantom B study: where its files are and what is true about it."""

    folder: Path
    case: str
    seed: int
    pathology: str
    sides: dict[str, PhantomBSide]  # "left" / "right"

    @property
    def dicom_dir(self) -> Path:
        """The study folder the analysis reads (the truth files sit next to it)."""
        return self.folder / "dicom"

    @property
    def mask(self) -> Path:
        """The truth label mask (NIfTI, STIR grid)."""
        return self.folder / "truth_oedema.nii.gz"

    @staticmethod
    def load(folder: Path) -> PhantomBTruth:
        """Read ``folder/truth.json``."""
        raw = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
        sides = {
            name: PhantomBSide(
                present=bool(s["present"]),
                pattern=str(s["pattern"]),
                volume_ml=float(s["oedema_volume_ml"]),
                mask_volume_ml=float(s["oedema_mask_volume_ml"]),
                effusion=bool(s["effusion"]),
                head_centre_lps_mm=(float(s["head_centre_lps_mm"][0]), float(s["head_centre_lps_mm"][1]),
                                    float(s["head_centre_lps_mm"][2])),
                neck_axis_lps=(float(s["neck_axis_lps"][0]), float(s["neck_axis_lps"][1]),
                               float(s["neck_axis_lps"][2])),
            )
            for name, s in raw["sides"].items()
        }
        return PhantomBTruth(folder=folder, case=str(raw["case"]), seed=int(raw["seed"]),
                             pathology=str(raw["pathology"]), sides=sides)


def phantom_b_available(script: Path = PHANTOM_B) -> bool:
    """Whether the phantom B generator script is there."""
    return script.is_file()


def generate_phantom_b(folder: Path, case: str, seed: int, script: Path = PHANTOM_B,
                       extra: Sequence[str] = ()) -> None:
    """Generate one study into ``folder`` unless it is already there.

    The generator writes into a temporary sibling folder that is renamed into place when complete,
    so concurrent callers never see a partial study (the loser of a race discards its copy).
    ``extra``: further generator options (``--pathology``, ``--patient-id``, ``--study-date``, ...).
    Raises ``PhantomBSkipped`` on exit status 3 and ``RuntimeError`` on any other failure.
    """
    if not (folder / "truth.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            proc = subprocess.run(
                [sys.executable, str(script), str(tmp), "--case", case, "--seed", str(seed), "--quiet", *extra],
                capture_output=True, text=True, timeout=GENERATE_TIMEOUT_S, check=False,
            )
            if proc.returncode == SKIP_STATUS:
                raise PhantomBSkipped(proc.stderr.strip() or f"{case}: skipped by phantom B")
            if proc.returncode != 0 or not (tmp / "truth.json").is_file():
                last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
                raise RuntimeError(f"phantom B {case} seed {seed} failed (exit {proc.returncode}): {last}")
            try:
                tmp.rename(folder)
            except OSError:
                if not (folder / "truth.json").is_file():  # not a lost race: a real problem
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def phantom_b_study(case: str, seed: int, root: Path, script: Path = PHANTOM_B) -> Path:
    """The study folder ``root/<case>_s<seed>`` (generated if missing); the analysis reads its ``dicom/``."""
    folder = root / f"{case}_s{seed}"
    generate_phantom_b(folder, case, seed, script)
    return folder
