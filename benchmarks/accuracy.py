# mypy: disallow-untyped-calls=False
"""Accuracy of the oedema analysis on the synthetic phantom: every case over several seeds.

    python benchmarks/accuracy.py [--seeds 0 1 2] [--size small|full] [--variants] [--png DIR]

Each study is generated once into a cache folder (``--cache``, default
/tmp/marrowmap-phantom-cache), analysed with ``workers.pipeline.analyze_study_dir`` (load,
select, analyse, exactly as ``marrowmap analyze``) and compared with the phantom's truth.
Prints one row per study and a summary per case: Dice vs truth, volume error %, laterality,
false oedema on normal hips, effusion and pattern right/wrong, stage timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from marrowmap.logs import configure_logging
from workers.analysis.result import AnalysisResult, Side
from workers.phantom.cases import CASES
from workers.phantom.study import generate_study
from workers.phantom.truth import GroundTruth
from workers.pipeline import analyze_study_dir

LABELS: dict[Side, int] = {"right": 1, "left": 2}
VARIANT_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("itoh_left", ("feet_first",)),
    ("itoh_right", ("oblique",)),
    ("itoh_left", ("mismatched_grids",)),
    ("itoh_right", ("axial_only",)),
    ("normal", ("fat_sat_failure",)),
    ("itoh_left", ("fat_sat_failure",)),
    ("bilateral", ("noisy",)),
    ("itoh_left", ("low_res",)),
    ("itoh_left", ("enhanced_stir", "jpegls")),
    ("itoh_right", ("philips",)),
)


@dataclass
class Row:
    case: str
    variants: tuple[str, ...]
    seed: int
    status: str
    dice: list[float] = field(default_factory=list)
    volume_error_pct: list[float] = field(default_factory=list)
    laterality_ok: bool = False
    false_ml: list[float] = field(default_factory=list)
    effusion_ok: int = 0
    effusion_n: int = 0
    pattern_ok: int = 0
    pattern_n: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    note: str = ""


def study_dir(cache: Path, case: str, seed: int, variants: tuple[str, ...], small: bool) -> Path:
    """Generate (once) and return the study folder."""
    name = f"{case}_s{seed}_{'small' if small else 'full'}" + "".join(f"_{v}" for v in variants)
    folder = cache / name
    if not (folder / "truth" / "truth.json").is_file():
        generate_study(folder, case, seed, variants=variants, small=small)
    return folder


def _truth_on(grid: sitk.Image, truth_mask: sitk.Image) -> np.ndarray:
    """Truth labels on the analysis grid (resampled nearest-neighbour when the grids differ)."""
    same = (truth_mask.GetSize() == grid.GetSize()
            and np.allclose(truth_mask.GetOrigin(), grid.GetOrigin(), atol=1e-3)
            and np.allclose(truth_mask.GetDirection(), grid.GetDirection(), atol=1e-6))
    if not same:
        truth_mask = sitk.Resample(truth_mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(truth_mask)


def evaluate(folder: Path, out: Path, case: str, seed: int, variants: tuple[str, ...]) -> Row:
    """Analyse one study and compare with its truth."""
    truth = GroundTruth.load(folder / "truth" / "truth.json")
    result: AnalysisResult = analyze_study_dir(folder, out, dicom_outputs=False)
    row = Row(case=case, variants=variants, seed=seed, status=result.status, timings=dict(result.timings_s))
    if result.status != "analyzed":
        row.note = result.reason
        return row
    mask_img = sitk.ReadImage(str(out / "oedema_mask.nii.gz"))
    mask = sitk.GetArrayFromImage(mask_img)
    ref = _truth_on(mask_img, sitk.ReadImage(str(folder / "truth" / "oedema.nii.gz")))
    voxel_ml = float(np.prod(mask_img.GetSpacing())) / 1000.0
    reported_present = set()
    truth_present = set()
    for side, label in LABELS.items():
        st = truth.sides[side]
        sr = result.sides[side]
        if sr.present:
            reported_present.add(side)
        if st.present:
            truth_present.add(side)
            a = mask == label
            b = ref == label
            row.dice.append(float(2 * (a & b).sum() / max(int(a.sum() + b.sum()), 1)))
            truth_ml = float(b.sum()) * voxel_ml
            measured = sr.oedema_volume_ml if sr.oedema_volume_ml is not None else 0.0
            row.volume_error_pct.append(100.0 * (measured - truth_ml) / max(truth_ml, 1e-6))
        else:
            row.false_ml.append(sr.oedema_volume_ml if sr.oedema_volume_ml is not None else float("nan"))
        if sr.localized and sr.present is not None:
            row.effusion_n += 1
            row.effusion_ok += int(bool(sr.effusion) == st.effusion)
            row.pattern_n += 1
            row.pattern_ok += int((sr.pattern or "none") == st.pattern)
    # laterality: the sides called positive are exactly the truth's, and no mask label lands on the other side's truth
    pairs: tuple[tuple[Side, Side], ...] = (("right", "left"), ("left", "right"))
    swapped = any(bool(np.any((mask == LABELS[s]) & (ref == LABELS[o]))) for s, o in pairs)
    row.laterality_ok = reported_present == truth_present and not swapped
    withheld = [s for s, r in result.sides.items() if not r.localized or r.present is None]
    if withheld:
        row.note = "withheld: " + ",".join(withheld)
    if result.quality.warnings:
        row.note += (" | " if row.note else "") + f"{len(result.quality.warnings)} warning(s)"
    return row


def _hot(v: np.ndarray) -> np.ndarray:
    """A black-red-yellow-white colour map for values in [0, 1] -> (..., 3) floats."""
    return np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)


def render_png(folder: Path, out: Path, png: Path) -> None:
    """Coronal fluid-sensitive slices (through the heads, and where each side's oedema is largest) with
    the score (SIR, colour), the mask outline (orange), the truth outline (green) and the regions (blue)."""
    from PIL import Image, ImageDraw
    from scipy import ndimage

    from workers.io.load import load_study
    from workers.io.select import select_series

    study = load_study(folder)
    fluid = select_series(study.loaded, study.problems).fluid_sensitive
    if fluid is None:
        return
    img = sitk.GetArrayFromImage(fluid.image).astype(np.float32)
    score = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "score.nii.gz")))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "oedema_mask.nii.gz")))
    regions = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "regions.nii.gz")))
    ref = _truth_on(fluid.image, sitk.ReadImage(str(folder / "truth" / "oedema.nii.gz")))
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
        draw.text((6, 6), f"{folder.name} z={z}  score: SIR (colour)  orange: mask  green: truth  blue: regions",
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


def _fmt(values: list[float], spec: str = ".3f") -> str:
    vals = [v for v in values if not np.isnan(v)]
    return format(statistics.fmean(vals), spec) if vals else "-"


def print_rows(rows: list[Row]) -> None:
    header = (f"{'case':<18}{'variants':<26}{'seed':>4} {'status':<15}{'dice':>7}{'vol err%':>10}{'lat':>5}"
              f"{'false mL':>10}{'effus':>7}{'patt':>6}{'time s':>8}  note")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.case:<18}{'+'.join(r.variants) or '-':<26}{r.seed:>4} {r.status:<15}{_fmt(r.dice):>7}"
              f"{_fmt(r.volume_error_pct, '+.1f'):>10}{'ok' if r.laterality_ok else 'WRONG':>5}"
              f"{_fmt(r.false_ml, '.2f'):>10}{f'{r.effusion_ok}/{r.effusion_n}':>7}{f'{r.pattern_ok}/{r.pattern_n}':>6}"
              f"{r.timings.get('total', 0.0):>8.1f}  {r.note}")


def print_summary(rows: list[Row]) -> None:
    print("\nPer case (all seeds):")
    header = (f"{'case':<18}{'variants':<26}{'n':>3}{'dice':>7}{'dice min':>9}{'|vol err| %':>12}{'lat ok':>8}"
              f"{'false mL max':>13}{'effusion':>10}{'pattern':>9}")
    print(header)
    print("-" * len(header))
    groups: dict[tuple[str, tuple[str, ...]], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.case, r.variants), []).append(r)
    for (case, variants), rs in groups.items():
        dice = [d for r in rs for d in r.dice]
        verr = [abs(v) for r in rs for v in r.volume_error_pct]
        false = [f for r in rs for f in r.false_ml if not np.isnan(f)]
        eff = (sum(r.effusion_ok for r in rs), sum(r.effusion_n for r in rs))
        pat = (sum(r.pattern_ok for r in rs), sum(r.pattern_n for r in rs))
        print(f"{case:<18}{'+'.join(variants) or '-':<26}{len(rs):>3}{_fmt(dice):>7}"
              f"{(format(min(dice), '.3f') if dice else '-'):>9}{_fmt(verr, '.1f'):>12}"
              f"{f'{sum(r.laterality_ok for r in rs)}/{len(rs)}':>8}"
              f"{(format(max(false), '.2f') if false else '-'):>13}{f'{eff[0]}/{eff[1]}':>10}{f'{pat[0]}/{pat[1]}':>9}")
    stages: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.timings.items():
            stages.setdefault(k, []).append(v)
    print("\nStage timings, mean (max) s: " + ", ".join(
        f"{k} {statistics.fmean(v):.2f} ({max(v):.2f})" for k, v in stages.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", choices=["small", "full"], default="small")
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--variants", action="store_true", help="also run the acquisition-variant rows (first seed)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/marrowmap-phantom-cache"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/marrowmap-accuracy"))
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--png", type=Path, default=None,
                        help="render the first seed of each case (and each variant row) to DIR/analysis_<study>.png")
    args = parser.parse_args(argv)
    configure_logging("WARNING", "console")
    small = args.size == "small"
    jobs: list[tuple[str, int, tuple[str, ...]]] = [(c, s, ()) for c in args.cases for s in args.seeds]
    if args.variants:
        jobs += [(c, args.seeds[0], v) for c, v in VARIANT_ROWS]
    rows = []
    start = time.perf_counter()
    for case, seed, variants in jobs:
        folder = study_dir(args.cache, case, seed, variants, small)
        out = args.out / folder.name
        rows.append(evaluate(folder, out, case, seed, variants))
        if args.png is not None and seed == args.seeds[0] and rows[-1].status == "analyzed":
            render_png(folder, out, args.png / f"analysis_{folder.name}.png")
        print(f"  done {folder.name} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    print(f"MarrowMap accuracy on the phantom, size={args.size}, seeds={args.seeds}\n")
    print_rows(rows)
    print_summary(rows)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
