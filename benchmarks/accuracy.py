# mypy: disallow-untyped-calls=False
"""Accuracy of the oedema analysis on two independent synthetic generators, one table set each.

    python benchmarks/accuracy.py [--generators own b] [--seeds-own 0 1 2 3 4] [--seeds-b 11 12 13 14 15]
        [--cases-own ...] [--cases-b ...] [--size full|small] [--base-only] [--jobs 2]
        [--phantom-b PATH] [--cache DIR] [--out DIR] [--json FILE] [--png DIR]

Generators: ``own`` = the project's phantom (``workers.phantom.study.generate_study``), every case
and every acquisition variant (``VARIANT_ROWS``; ``--base-only`` skips them), every seed; ``b`` = phantom B, the
independently written generator in ``<repo>/../shared/phantom-b`` (``--phantom-b`` or
``MARROWMAP_PHANTOM_B``), run as a subprocess, every case. Each study is generated once into the
cache (``--cache``; phantom B under ``DIR/b/<case>_s<seed>``), analysed with
``workers.pipeline.analyze_study_dir`` (exactly as ``marrowmap analyze``) and compared with its
truth, studies running in ``--jobs`` processes. A study whose generation or analysis crashes is
recorded as an error and the run goes on.

Per generator it prints one row per hip (presence and side, Dice, volume error vs the continuous
truth and, in brackets, vs the voxel truth mask, false mL on normal hips, effusion and pattern
right/wrong, withheld hips with the reason), a summary per case, the withheld hips by reason, how
often each quality guard fired, and an acceptance block (PASS/FAIL) over the clean studies.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import SimpleITK as sitk
from phantom_b import DEFAULT_SEEDS, PHANTOM_B_CASES, PhantomBSkipped, cached_study, locate

from marrowmap.logs import configure_logging
from workers.phantom.cases import CASES
from workers.phantom.study import dicom_dir, generate_study, truth_dir
from workers.phantom.truth import GroundTruth

if TYPE_CHECKING:
    from workers.analysis.result import AnalysisResult, Side

T = TypeVar("T")
LABELS: dict[Side, int] = {"right": 1, "left": 2}
OTHER: dict[Side, Side] = {"right": "left", "left": "right"}
REASON_CHARS = 60
#: Own-phantom variant rows: (case, variants, clean). Clean rows must not be withheld and count in
#: the acceptance; fat-suppression failure may legitimately be withheld and does not.
VARIANT_ROWS: tuple[tuple[str, tuple[str, ...], bool], ...] = (  # (case, variants, clean)
    ("itoh_left", ("feet_first",), True),
    ("itoh_right", ("oblique",), True),
    ("itoh_left", ("mismatched_grids",), True),
    ("itoh_right", ("axial_only",), True),
    ("itoh_left", ("enhanced_stir",), True),
    ("itoh_left", ("jpeg2000",), True),
    ("itoh_right", ("jpegls",), True),
    ("bilateral", ("rle",), True),
    ("itoh_left", ("siemens",), True),
    ("itoh_right", ("ge",), True),
    ("itoh_right", ("philips",), True),
    ("itoh_left", ("low_res",), True),
    ("bilateral", ("noisy",), True),
    ("itoh_left", ("nonascii_name",), True),
    ("normal", ("nonascii_utf8",), True),
    ("itoh_right", ("other_patient",), True),
    ("itoh_left", ("localizer",), True),
    ("normal", ("fat_sat_failure",), False),
    ("itoh_left", ("fat_sat_failure",), False),
    ("normal", ("motion",), False),
    ("itoh_left", ("wrap",), False),
)
VERDICTS: dict[bool | None, str] = {True: "PASS", False: "FAIL", None: "n/a"}
GENERATOR_TITLES = {"own": "own phantom (workers.phantom)", "b": "phantom B"}


class HipTruth(Protocol):
    """What both generators' truth says about one hip."""

    @property
    def present(self) -> bool: ...
    @property
    def pattern(self) -> str: ...
    @property
    def volume_ml(self) -> float: ...
    @property
    def mask_volume_ml(self) -> float: ...
    @property
    def effusion(self) -> bool: ...
    @property
    def head_centre_lps_mm(self) -> Sequence[float]: ...


@dataclass(frozen=True)
class Job:
    """One study to generate, analyse and score."""

    generator: str  # "own" | "b"
    case: str
    seed: int
    variants: tuple[str, ...] = ()
    clean: bool = True
    render: bool = False


@dataclass(frozen=True)
class Setup:
    """Run-wide settings every job needs."""

    cache: Path
    out: Path
    png: Path | None
    small: bool
    phantom_b: Path | None


@dataclass(frozen=True)
class Study:
    """A generated study: what the analysis reads and what is true."""

    name: str
    input_dir: Path
    truth_mask: Path  # labels 1 = right, 2 = left
    sides: Mapping[str, HipTruth]


@dataclass
class Hip:
    """One hip of one study: truth, what was reported, and the comparison."""

    side: Side
    truth_present: bool
    truth_pattern: str
    truth_ml: float
    truth_mask_ml: float
    truth_effusion: bool
    withheld: str | None = None  # the reason, when the hip has no result
    present: bool | None = None
    pattern: str | None = None
    volume_ml: float | None = None
    effusion: bool | None = None
    presence_ok: bool = False
    side_ok: bool = False  # no voxel of this side's label nearer the other femoral head
    dice: float | None = None  # truth-present hips
    vol_err_pct: float | None = None  # vs the continuous truth, truth-present hips
    vol_err_mask_pct: float | None = None  # vs the voxel truth mask
    false_ml: float | None = None  # truth-normal hips
    effusion_ok: bool = False
    pattern_ok: bool = False


@dataclass
class Row:
    """One study's outcome; ``status`` is the analysis status, or "skipped" / "error"."""

    generator: str
    case: str
    variants: tuple[str, ...]
    seed: int
    clean: bool
    status: str = "error"
    hips: list[Hip] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    note: str = ""
    guards: list[str] = field(default_factory=list)  # quality guards that fired (GUARDS keys)


#: Quality guards and the words of their warnings: each is counted on clean studies (target 0).
GUARDS: dict[str, str] = {
    "fat suppression failed": "fat suppression failed",
    "motion ghosts": "motion ghosts",
    "wrap-around": "wrap-around",
}


@dataclass(frozen=True)
class Check:
    """One acceptance criterion and whether it holds (None: nothing to judge in this run)."""

    criterion: str
    passed: bool | None
    detail: str


def _short(text: str, chars: int = REASON_CHARS) -> str:
    """``text`` cut to ``chars`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 3] + "..."


def own_study_dir(cache: Path, case: str, seed: int, variants: tuple[str, ...], small: bool) -> Path:
    """Generate (once) and return an own-phantom study folder."""
    name = f"{case}_s{seed}_{'small' if small else 'full'}" + "".join(f"_{v}" for v in variants)
    folder = cache / name
    if not (truth_dir(folder) / "truth.json").is_file() or not dicom_dir(folder).is_dir():
        generate_study(folder, case, seed, variants=variants, small=small)
    return folder


def prepare(job: Job, setup: Setup) -> Study:
    """Generate (or find in the cache) the job's study."""
    if job.generator == "own":
        folder = own_study_dir(setup.cache, job.case, job.seed, job.variants, setup.small)
        truth = GroundTruth.load(truth_dir(folder) / "truth.json")
        return Study(folder.name, dicom_dir(folder), truth_dir(folder) / "oedema.nii.gz", truth.sides)
    if setup.phantom_b is None:
        raise ValueError("phantom B job without a generator script")
    b = cached_study(setup.cache, job.case, job.seed, setup.phantom_b)
    return Study(b.folder.name, b.dicom_dir, b.mask, b.sides)


def _truth_on(grid: sitk.Image, truth_mask: sitk.Image) -> np.ndarray:
    """Truth labels on the analysis grid (resampled nearest-neighbour when the grids differ)."""
    same = (truth_mask.GetSize() == grid.GetSize()
            and np.allclose(truth_mask.GetOrigin(), grid.GetOrigin(), atol=1e-3)
            and np.allclose(truth_mask.GetSpacing(), grid.GetSpacing(), atol=1e-4)
            and np.allclose(truth_mask.GetDirection(), grid.GetDirection(), atol=1e-6))
    if not same:
        truth_mask = sitk.Resample(truth_mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(truth_mask)


def _wrong_side_voxels(img: sitk.Image, labelled: np.ndarray, own: Sequence[float],
                       other: Sequence[float]) -> int:
    """Voxels of a boolean (k, j, i) mask that lie nearer the other femoral head than their own."""
    idx = np.argwhere(labelled)[:, ::-1].astype(np.float64) * np.asarray(img.GetSpacing())
    points = np.asarray(img.GetOrigin()) + idx @ np.asarray(img.GetDirection()).reshape(3, 3).T
    nearer_other = (np.linalg.norm(points - np.asarray(own), axis=1)
                    > np.linalg.norm(points - np.asarray(other), axis=1))
    return int(nearer_other.sum())


def evaluate(study: Study, result: AnalysisResult, out: Path) -> list[Hip]:
    """Compare one analysis result with the study's truth, hip by hip."""
    hips = [Hip(side, t.present, t.pattern, t.volume_ml, t.mask_volume_ml, t.effusion)
            for side, t in ((s, study.sides[s]) for s in LABELS)]
    if result.status != "analyzed":
        for hip in hips:
            hip.withheld = _short(f"{result.status}: {result.reason}")
        return hips
    mask_img = sitk.ReadImage(str(out / "oedema_mask.nii.gz"))
    mask = sitk.GetArrayFromImage(mask_img)
    ref = _truth_on(mask_img, sitk.ReadImage(str(study.truth_mask)))
    for hip in hips:
        sr = result.sides.get(hip.side)
        if sr is None or not sr.localized or sr.present is None:
            hip.withheld = _short(sr.reason if sr is not None and sr.reason else "no result for this hip")
            continue
        truth = study.sides[hip.side]
        measured = sr.oedema_volume_ml or 0.0
        hip.present, hip.pattern, hip.volume_ml, hip.effusion = sr.present, sr.pattern, measured, sr.effusion
        hip.presence_ok = sr.present == truth.present
        labelled = mask == LABELS[hip.side]
        hip.side_ok = _wrong_side_voxels(mask_img, labelled, truth.head_centre_lps_mm,
                                         study.sides[OTHER[hip.side]].head_centre_lps_mm) == 0
        hip.effusion_ok = bool(sr.effusion) == truth.effusion
        hip.pattern_ok = (sr.pattern or "none") == truth.pattern
        if truth.present:
            ref_side = ref == LABELS[hip.side]
            hip.dice = float(2 * (labelled & ref_side).sum() / max(int(labelled.sum() + ref_side.sum()), 1))
            hip.vol_err_pct = 100.0 * (measured - truth.volume_ml) / max(truth.volume_ml, 1e-6)
            if truth.mask_volume_ml > 0:
                hip.vol_err_mask_pct = 100.0 * (measured - truth.mask_volume_ml) / truth.mask_volume_ml
        else:
            hip.false_ml = measured
    return hips


def run_job(job: Job, setup: Setup) -> Row:
    """Generate, analyse and score one study; never raises (a crash becomes an "error" row)."""
    row = Row(job.generator, job.case, job.variants, job.seed, job.clean)
    try:
        study = prepare(job, setup)
        # imported here: the analysis is being changed, and a broken import fails studies, not the run
        from workers.pipeline import analyze_study_dir

        out = setup.out / job.generator / study.name
        result = analyze_study_dir(study.input_dir, out, dicom_outputs=False)
        row.status, row.timings = result.status, dict(result.timings_s)
        row.hips = evaluate(study, result, out)
        row.guards = [g for g, words in GUARDS.items() if any(words in w for w in result.quality.warnings)]
        if setup.png is not None and job.render and result.status == "analyzed":
            render_png(study, out, setup.png / f"analysis_{job.generator}_{study.name}.png")
    except PhantomBSkipped as exc:
        row.status, row.note = "skipped", _short(str(exc), 100)
    except Exception as exc:  # the benchmark's boundary: record the study as failed, go on
        traceback.print_exc(file=sys.stderr)
        row.note = _short(f"{type(exc).__name__}: {exc}", 200)
    return row


def _hot(v: np.ndarray) -> np.ndarray:
    """A black-red-yellow-white colour map for values in [0, 1] -> (..., 3) floats."""
    return np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)


def render_png(study: Study, out: Path, png: Path) -> None:
    """Fluid-sensitive slices (through the heads, and where each side's oedema is largest) with
    the score (SIR, colour), the mask outline (orange), the truth outline (green) and the regions (blue)."""
    from PIL import Image, ImageDraw
    from scipy import ndimage

    from workers.analysis.result import AnalysisResult
    from workers.io.load import load_study
    from workers.io.select import select_series

    loaded = load_study(study.input_dir)
    fluid = select_series(loaded.loaded, loaded.problems).fluid_sensitive
    if fluid is None:
        return
    img = sitk.GetArrayFromImage(fluid.image).astype(np.float32)
    score = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "score.nii.gz")))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "oedema_mask.nii.gz")))
    regions = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "regions.nii.gz")))
    ref = _truth_on(fluid.image, sitk.ReadImage(str(study.truth_mask)))
    result = AnalysisResult.model_validate_json((out / "result.json").read_text())
    slices = []
    centres = [s.head_centre_lps_mm for s in result.sides.values() if s.head_centre_lps_mm]
    if centres:
        mean = np.mean(np.asarray(centres), axis=0)
        slices.append(int(round(fluid.image.TransformPhysicalPointToContinuousIndex(tuple(mean))[2])))
    slices += [s.largest_slice_index for s in result.sides.values() if s.largest_slice_index is not None]
    lo, hi = np.percentile(img, [1, 99.5])
    # which image side is the patient's right: columns run along direction[:, 0]; +x is patient left
    col_dir_x = fluid.image.GetDirection()[0]
    tiles = []
    for z in dict.fromkeys(slices):
        if not 0 <= z < img.shape[0]:
            continue
        g = np.clip((img[z] - lo) / (hi - lo), 0, 1)
        rgb = np.stack([g, g, g], axis=-1)
        sc = score[z]
        on = sc > 0
        rgb[on] = 0.45 * rgb[on] + 0.55 * _hot(np.clip((sc[on] - 1) / 9.0, 0.25, 1.0))
        for m, colour in ((regions[z] > 0, (0.3, 0.5, 1.0)), (ref[z] > 0, (0.1, 1.0, 0.1)), (mask[z] > 0, (1.0, 0.55, 0.0))):
            rgb[m & ~ndimage.binary_erosion(m)] = colour
        tile = Image.fromarray((rgb * 255).astype(np.uint8))
        scale = max(1, 512 // tile.width)
        tile = tile.resize((tile.width * scale, tile.height * scale), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(tile)
        left_text, right_text = ("R", "L") if col_dir_x > 0 else ("L", "R")
        draw.text((6, tile.height // 2), left_text, fill=(255, 255, 0))
        draw.text((tile.width - 14, tile.height // 2), right_text, fill=(255, 255, 0))
        draw.text((6, 6), f"{study.name} z={z}  score: SIR (colour)  orange: mask  green: truth  blue: regions",
                  fill=(255, 255, 255))
        tiles.append(tile)
    if not tiles:
        return
    canvas = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)))
    x = 0
    for t in tiles:
        canvas.paste(t, (x, 0))
        x += t.width
    png.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(png)


def _mean(values: Sequence[float], spec: str = ".3f") -> str:
    """Formatted mean, "-" when empty."""
    return format(statistics.fmean(values), spec) if values else "-"


def _extreme(values: Sequence[float], pick: Callable[[Sequence[float]], float], spec: str) -> str:
    """Formatted min or max, "-" when empty."""
    return format(pick(values), spec) if values else "-"


def _num(value: float | None, spec: str) -> str:
    """Formatted number, "-" when None."""
    return "-" if value is None else format(value, spec)


def _ok(hip: Hip, value: bool) -> str:
    """"ok" / "NO", or "-" for a withheld hip."""
    return "-" if hip.withheld is not None else ("ok" if value else "NO")


def _label(row: Row) -> str:
    """Case and variants of a row."""
    return row.case + "".join(f"+{v}" for v in row.variants)


def _findings(present: bool | None, pattern: str | None, ml: float | None, effusion: bool | None) -> str:
    """Compact "+diffuse 85.9 E" (present, pattern, mL, effusion)."""
    return f"{'+' if present else '-'}{pattern or 'none':<7}{_num(ml, '6.1f')}{' E' if effusion else '  '}"


def print_hips(rows: Sequence[Row]) -> None:
    """One line per hip (withheld hips with their reason); skipped and crashed studies on one line."""
    header = (f"{'case':<32}{'seed':>4} {'side':<6}{'status':<15}{'truth':<17}{'reported':<17}{'pres':>5}"
              f"{'side':>5}{'dice':>7}{'vol err%':>9}{'(mask)':>8}{'false mL':>9}{'eff':>4}{'patt':>5}"
              f"{'time s':>7}  withheld reason / note")
    print(header)
    print("-" * len(header))
    for r in rows:
        total = r.timings.get("total", 0.0)
        if not r.hips:
            print(f"{_label(r):<32}{r.seed:>4} {'-':<6}{r.status:<15}{r.note}")
            continue
        for h in r.hips:
            reported = "withheld" if h.withheld is not None else _findings(h.present, h.pattern, h.volume_ml, h.effusion)
            print(f"{_label(r):<32}{r.seed:>4} {h.side:<6}{r.status:<15}"
                  f"{_findings(h.truth_present, h.truth_pattern, h.truth_ml, h.truth_effusion):<17}{reported:<17}"
                  f"{_ok(h, h.presence_ok):>5}{_ok(h, h.side_ok):>5}{_num(h.dice, '.3f'):>7}"
                  f"{_num(h.vol_err_pct, '+.1f'):>9}{_num(h.vol_err_mask_pct, '+.1f'):>8}"
                  f"{_num(h.false_ml, '.2f'):>9}{_ok(h, h.effusion_ok):>4}{_ok(h, h.pattern_ok):>5}"
                  f"{total:>7.1f}  {h.withheld or r.note}")


def print_summary(rows: Sequence[Row]) -> None:
    """Per case (all seeds), the withheld hips by reason, failed studies and stage timings."""
    print("\nPer case (all seeds; hips with a result unless stated; vol err vs continuous truth, "
          "(mask) vs voxel truth):")
    header = (f"{'case':<32}{'clean':>6}{'n':>3}{'hips':>5}{'withheld':>9}{'pres ok':>8}{'side ok':>8}"
              f"{'dice':>7}{'dice min':>9}{'|err| %':>8}{'max':>6}{'(mask)':>8}{'false mL max':>13}"
              f"{'effusion':>9}{'pattern':>8}")
    print(header)
    print("-" * len(header))
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(_label(r), []).append(r)
    for label, rs in groups.items():
        hips = [h for r in rs for h in r.hips]
        given = [h for h in hips if h.withheld is None]
        dice = [h.dice for h in given if h.dice is not None]
        err = [abs(h.vol_err_pct) for h in given if h.vol_err_pct is not None]
        err_mask = [abs(h.vol_err_mask_pct) for h in given if h.vol_err_mask_pct is not None]
        false = [h.false_ml for h in given if h.false_ml is not None]
        n = len(given)
        print(f"{label:<32}{'yes' if rs[0].clean else 'no':>6}{len(rs):>3}{len(hips):>5}{len(hips) - n:>9}"
              f"{f'{sum(h.presence_ok for h in given)}/{n}':>8}{f'{sum(h.side_ok for h in given)}/{n}':>8}"
              f"{_mean(dice):>7}{_extreme(dice, min, '.3f'):>9}{_mean(err, '.1f'):>8}{_extreme(err, max, '.1f'):>6}"
              f"{_mean(err_mask, '.1f'):>8}{_extreme(false, max, '.2f'):>13}"
              f"{f'{sum(h.effusion_ok for h in given)}/{n}':>9}{f'{sum(h.pattern_ok for h in given)}/{n}':>8}")
    reasons = Counter(h.withheld for r in rows for h in r.hips if h.withheld is not None)
    print(f"\nWithheld hips by reason ({sum(reasons.values())}):" + ("" if reasons else " none"))
    for reason, count in reasons.most_common():
        print(f"{count:>5}  {reason}")
    print("\nQuality guards fired (studies; target 0 on clean ones):")
    for guard in GUARDS:
        clean = sum(guard in r.guards for r in rows if r.clean)
        other = sum(guard in r.guards for r in rows if not r.clean)
        print(f"{guard:>24}: {clean} of {sum(r.clean for r in rows)} clean, {other} of "
              f"{sum(not r.clean for r in rows)} artefact rows")
    broken = [r for r in rows if not r.hips]
    if broken:
        print(f"\nStudies without a result ({len(broken)}):")
        for r in broken:
            print(f"  {_label(r)} seed {r.seed}: {r.status}: {r.note}")
    stages: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.timings.items():
            stages.setdefault(k, []).append(v)
    if stages:
        print("\nStage timings, mean (max) s: " + ", ".join(
            f"{k} {statistics.fmean(v):.2f} ({max(v):.2f})" for k, v in stages.items()))


def _check(criterion: str, values: Sequence[float], passed: Callable[[Sequence[float]], bool],
           detail: Callable[[Sequence[float]], str]) -> Check:
    """A criterion over ``values``; with no values it is not judged."""
    if not values:
        return Check(criterion, None, "nothing to judge")
    return Check(criterion, passed(values), detail(values))


def acceptance(rows: Sequence[Row]) -> list[Check]:
    """The acceptance criteria over the clean studies (skipped studies left out)."""
    clean = [r for r in rows if r.clean and r.status != "skipped"]
    hips = [h for r in clean for h in r.hips]
    given = [h for h in hips if h.withheld is None]
    diffuse = [h for h in given if h.truth_pattern == "diffuse"]
    failed = [r for r in clean if r.status in ("failed", "error")]
    withheld = [1.0 if h.withheld is not None else 0.0 for h in hips]
    right = [1.0 if h.presence_ok and h.side_ok else 0.0 for h in given]
    err = [abs(h.vol_err_pct) for h in diffuse if h.vol_err_pct is not None]
    return [
        Check("no clean study failed", not failed if clean else None,
              f"{len(failed)} of {len(clean)} studies failed"),
        _check("0 clean hips withheld", withheld, lambda v: sum(v) == 0,
               lambda v: f"{sum(v):.0f} of {len(v)} hips withheld"),
        _check("side and presence 100 %", right, lambda v: min(v) == 1.0,
               lambda v: f"{sum(v):.0f}/{len(v)} hips with a result right"),
        _check("normal hips < 1 mL false oedema (max)", [h.false_ml for h in given if h.false_ml is not None],
               lambda v: max(v) < 1.0, lambda v: f"max {max(v):.2f} mL over {len(v)} hips"),
        _check("effusion right on >= 95 % of hips", [1.0 if h.effusion_ok else 0.0 for h in given],
               lambda v: statistics.fmean(v) >= 0.95,
               lambda v: f"{sum(v):.0f}/{len(v)} = {100 * statistics.fmean(v):.0f} %"),
        _check("diffuse volume |err| mean <= 7 %, max <= 15 %", err,
               lambda v: statistics.fmean(v) <= 7.0 and max(v) <= 15.0,
               lambda v: f"mean {statistics.fmean(v):.1f} %, max {max(v):.1f} % over {len(v)} hips"),
        _check("Dice mean >= 0.88 (diffuse hips)", [h.dice for h in diffuse if h.dice is not None],
               lambda v: statistics.fmean(v) >= 0.88,
               lambda v: f"mean {statistics.fmean(v):.3f}, min {min(v):.3f} over {len(v)} hips"),
        _check("AVN (truth focal) reported focal",
               [1.0 if h.pattern == "focal" else 0.0 for h in given if h.truth_pattern == "focal"],
               lambda v: min(v) == 1.0, lambda v: f"{sum(v):.0f}/{len(v)} hips"),
    ]


def print_acceptance(rows: Sequence[Row], checks: Sequence[Check]) -> None:
    """The acceptance block."""
    clean = [r for r in rows if r.clean and r.status != "skipped"]
    print(f"\nAcceptance over the {len(clean)} clean studies "
          f"({', '.join(sorted({_label(r) for r in rows if not r.clean})) or 'no artefact rows'} left out; "
          f"{sum(r.status == 'skipped' for r in rows)} skipped):")
    for c in checks:
        print(f"  {VERDICTS[c.passed]:<4}  {c.criterion:<48}{c.detail}")
    unjudged = sum(c.passed is None for c in checks)
    verdict = "FAIL" if any(c.passed is False for c in checks) else "PASS"
    print(f"  => {verdict}" + (f" ({unjudged} criteria not judged)" if unjudged else ""))


def make_jobs(args: argparse.Namespace) -> list[Job]:
    """The studies to run, in table order."""
    jobs: list[Job] = []
    if "own" in args.generators:
        first = args.seeds_own[0]
        jobs += [Job("own", c, s, render=s == first) for c in args.cases_own for s in args.seeds_own]
        if args.variants:
            jobs += [Job("own", c, s, v, clean, render=s == first)
                     for c, v, clean in VARIANT_ROWS for s in args.seeds_own]
    if "b" in args.generators:
        first = args.seeds_b[0]
        jobs += [Job("b", c, s, render=s == first) for c in args.cases_b for s in args.seeds_b]
    return jobs


def run_in_pool(fn: Callable[..., T], calls: Sequence[tuple[Any, ...]], workers: int,
                describe: Callable[[int, T], str]) -> list[T]:
    """``fn(*args)`` for each of ``calls`` in ``workers`` processes, results in call order; a progress
    line (``describe(index, result)``) on stderr as each finishes."""
    start = time.perf_counter()
    done: dict[int, T] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures: dict[Future[T], int] = {pool.submit(fn, *args): i for i, args in enumerate(calls)}
        for future in as_completed(futures):
            i = futures[future]
            done[i] = future.result()
            print(f"  [{len(done)}/{len(calls)}] {describe(i, done[i])} ({time.perf_counter() - start:.0f} s)",
                  file=sys.stderr, flush=True)
    return [done[i] for i in range(len(calls))]


def run_all(jobs: Sequence[Job], setup: Setup, workers: int) -> list[Row]:
    """Run the jobs in ``workers`` processes; rows in job order."""
    return run_in_pool(run_job, [(job, setup) for job in jobs], workers,
                       lambda i, row: f"{jobs[i].generator} {_label(row)} s{jobs[i].seed}: {row.status}")


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run every study, print the tables per generator."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generators", nargs="+", choices=["own", "b"], default=["own", "b"])
    parser.add_argument("--seeds-own", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--seeds-b", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--cases-own", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--cases-b", nargs="+", choices=PHANTOM_B_CASES, default=list(PHANTOM_B_CASES))
    parser.add_argument("--size", choices=["small", "full"], default="full",
                        help="own phantom size (small = the tests' 2 mm phantom)")
    parser.add_argument("--base-only", dest="variants", action="store_false",
                        help="skip the own phantom's acquisition-variant rows (run by default, every seed)")
    parser.add_argument("--phantom-b", type=Path, default=None,
                        help="phantom_b.py (default: MARROWMAP_PHANTOM_B, else <repo>/../shared/phantom-b)")
    parser.add_argument("--jobs", type=int, default=2, help="studies run in parallel processes")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/marrowmap-phantom-cache"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/marrowmap-accuracy"))
    parser.add_argument("--json", type=Path, default=None, help="also write rows and acceptance as JSON")
    parser.add_argument("--png", type=Path, default=None,
                        help="render the first seed of each case (and each variant row) to DIR/analysis_<study>.png")
    args = parser.parse_args(argv)
    configure_logging("WARNING", "console")
    setup = Setup(cache=args.cache, out=args.out, png=args.png, small=args.size == "small",
                  phantom_b=locate(args.phantom_b) if "b" in args.generators else None)
    rows = run_all(make_jobs(args), setup, max(1, args.jobs))
    report: dict[str, list[Check]] = {}
    for generator in args.generators:
        mine = [r for r in rows if r.generator == generator]
        seeds = args.seeds_own if generator == "own" else args.seeds_b
        extra = f"size={args.size}" if generator == "own" else str(setup.phantom_b)
        title = f"MarrowMap accuracy on the {GENERATOR_TITLES[generator]} ({extra}), seeds={seeds}"
        print(f"\n{title}\n{'=' * len(title)}\n")
        print_hips(mine)
        print_summary(mine)
        report[generator] = acceptance(mine)
        print_acceptance(mine, report[generator])
    if args.json:
        args.json.write_text(json.dumps({"rows": [asdict(r) for r in rows],
                                         "acceptance": {g: [asdict(c) for c in cs] for g, cs in report.items()}},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
