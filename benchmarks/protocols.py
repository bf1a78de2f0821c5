# mypy: disallow-untyped-calls=False
"""Real hip protocols (issue 11) on both generators: what the analysis reported per hip against the
truth, with the warnings it carried, and a PASS/FAIL summary per situation against the issue's
acceptance.

    python benchmarks/protocols.py [--generators own b] [--situations ...] [--seeds-own 0 1 2]
        [--seeds-b 11 12 13] [--size full|small] [--jobs 2] [--cache DIR] [--b-studies DIR]
        [--phantom-b PATH] [--out DIR] [--json FILE]

Own phantom: each situation is a variant of ``workers.phantom`` (``one_hip_left``, ``arthroplasty_right``,
``axial_stir``, ``pd_fs_3d``, ``dixon``, ``gapped``, ``partial_coverage``, ``coil_shading``,
``t1_shifted``, ``repacked_12bit``), generated into ``--cache``. Phantom B: the same situations
applied by ``tests/perturb.py`` to phantom B studies (read from ``--b-studies`` when there, e.g. the
accuracy benchmark's cache, which is only read; else generated into ``--cache/b``), the perturbed
copies in ``--cache/b-perturbed``. Every study is analysed with ``workers.pipeline.analyze_study_dir``
(as ``marrowmap analyze``) and scored with ``benchmarks/accuracy.py``'s ``evaluate``; studies run in
``--jobs`` processes, and a study that crashes is recorded and the run goes on.

Result fields the analysis may grow (``imaged``, ``metal``, ``coverage``, a volume range or
uncertainty on a hip) are read when present; the verdicts also key off the words of each hip's
reason and the study's warnings ("not imaged", "metal", "incomplete coverage", "registered" /
"T1 not used", "shading").
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accuracy import LABELS, Hip, Job, Setup, Study, evaluate, prepare, run_in_pool
from phantom_b import DEFAULT_SEEDS, PhantomBTruth, cached_study, locate

from marrowmap.logs import configure_logging
from tests.perturb import MASK_FILE, PerturbError, perturb

if TYPE_CHECKING:
    from workers.analysis.result import AnalysisResult, SideResult

#: The acceptance of each situation (issue 11), as printed in the summary.
ACCEPTANCE: dict[str, str] = {
    "one_hip": "imaged hip found, side right, volume within 15 % (normal < 1 mL); other hip 'not imaged'",
    "arthroplasty": "metal hip 'not assessable: metal implant'; other hip within 15 % / normal < 1 mL",
    "axial_stir": "axial-only fluid series: analysed, side right, volume within 15 % (normal < 1 mL)",
    "pd_fs_3d": "3D isotropic PD FS: analysed, side right, volume within 15 % (normal < 1 mL)",
    "dixon": "Dixon water: analysed, side right, volume within 15 % (normal < 1 mL)",
    "gapped": "volume within 20 %, or flagged with an uncertainty that contains the truth",
    "partial_coverage": "each imaged hip flagged (incomplete coverage) with the covered fraction",
    "coil_shading": "normal hips < 1 mL and affected within 15 %, or flagged",
    "t1_shifted": "the T1 registered or flagged (not used)",
    "repack_12bit": "same as a plain study: side right, volume within 15 %, normal < 1 mL",
}
VOLUME_TOLERANCE = {"gapped": 20.0}  # percent; 15 % otherwise
FALSE_ML_MAX = 1.0
SEED_COUNT = 3
NOT_IMAGED = ("not imaged", "outside the field of view", "not in the field of view")
METAL = ("metal", "implant", "arthroplasty", "prosthe")
COVERAGE = ("incomplete coverage", "partial coverage", "covered", "coverage")
T1_HANDLED = ("registered", "t1 not used", "t1 ignored", "t1 was not used", "misregist", "t1 moved")
SHADING = ("shading", "bias field", "inhomogene", "coil")
FLAG_FIELDS = ("imaged", "metal", "assessable")
COVERAGE_FIELDS = ("coverage_pct", "coverage")
UNCERTAINTY_FIELDS = ("oedema_volume_range_ml", "oedema_volume_interval_ml", "volume_range_ml")
HALF_WIDTH_FIELDS = ("oedema_volume_uncertainty_ml", "volume_uncertainty_ml")
_RANGE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:-|–|to)\s*(\d+(?:\.\d+)?)\s*ml", re.IGNORECASE)
_PLUS_MINUS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:±|\+/-)\s*(\d+(?:\.\d+)?)\s*ml", re.IGNORECASE)
_FRACTION = re.compile(r"\d+(?:\.\d+)?\s*%")


@dataclass(frozen=True)
class Row:
    """One benchmark row (run over every seed of its generator)."""

    situation: str
    generator: str  # "own" | "b"
    case: str
    variants: tuple[str, ...] = ()  # own phantom variants
    side_role: str | None = None  # phantom B: the hip perturbed, "affected" | "normal" | None (default)

    @property
    def label(self) -> str:
        if self.generator == "own":
            return self.case + "".join(f"+{v}" for v in self.variants)
        return f"{self.case}+{self.situation}" + (f"({self.side_role})" if self.side_role else "")


def _own(situation: str, *rows: tuple[str, str]) -> list[Row]:
    return [Row(situation, "own", case, (variant,)) for case, variant in rows]


def _b(situation: str, *rows: tuple[str, str | None]) -> list[Row]:
    return [Row(situation, "b", case, side_role=role) for case, role in rows]


ROWS: tuple[Row, ...] = (
    *_own("one_hip", ("itoh_left", "one_hip_left"), ("itoh_right", "one_hip_right"),
          ("itoh_left", "one_hip_right")),
    *_b("one_hip", ("itoh_left", "affected"), ("itoh_right", "normal")),
    *_own("arthroplasty", ("itoh_right", "arthroplasty_left"), ("normal", "arthroplasty_right")),
    *_b("arthroplasty", ("itoh_left", "normal"), ("itoh_right", "affected"), ("normal", None)),
    *_own("axial_stir", ("itoh_left", "axial_stir"), ("itoh_right", "axial_stir")),
    *_b("axial_stir", ("itoh_left", None), ("itoh_right", None)),
    *_own("pd_fs_3d", ("itoh_left", "pd_fs_3d")),
    *_own("dixon", ("itoh_right", "dixon")),
    *_own("gapped", ("itoh_left", "gapped"), ("bilateral", "gapped")),
    *_b("gapped", ("itoh_left", None), ("bilateral", None)),
    *_own("partial_coverage", ("itoh_right", "partial_coverage")),
    *_b("partial_coverage", ("itoh_right", None)),
    *_own("coil_shading", ("normal", "coil_shading"), ("itoh_left", "coil_shading"),
          ("itoh_right", "coil_shading")),
    *_b("coil_shading", ("normal", None), ("itoh_left", None)),
    *_own("t1_shifted", ("itoh_left", "t1_shifted")),
    *_b("t1_shifted", ("itoh_left", None)),
    *_own("repack_12bit", ("itoh_right", "repacked_12bit")),
    *_b("repack_12bit", ("itoh_right", None)),
)


@dataclass(frozen=True)
class Config:
    """Run-wide settings every job needs."""

    accuracy: Setup
    b_studies: Path  # phantom B studies to read (never written)


@dataclass
class HipRow:
    """One hip: the truth, what was reported, and the verdict against the situation's acceptance."""

    side: str
    truth_present: bool
    truth_ml: float
    imaged: bool
    metal: bool
    coverage: dict[str, float]
    localized: bool = False
    present: bool | None = None
    volume_ml: float | None = None
    reason: str = ""
    flags: dict[str, str] = field(default_factory=dict)  # result fields beyond today's SideResult
    side_ok: bool = False
    vol_err_pct: float | None = None
    verdict: bool | None = None
    why: str = ""


@dataclass
class Outcome:
    """One study: its row, seed, the analysis status and warnings, and its hips."""

    row: Row
    seed: int
    status: str = "error"
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    t1_used: str | None = None
    hips: list[HipRow] = field(default_factory=list)
    verdict: bool | None = None  # study-level verdict (t1_shifted)
    why: str = ""
    seconds: float = 0.0
    note: str = ""


def _has(text: str, words: Sequence[str]) -> bool:
    low = text.lower()
    return any(w in low for w in words)


def b_base(config: Config, case: str, seed: int) -> Path:
    """The phantom B study to perturb: read from ``b_studies`` when there, else generated into the cache."""
    given = config.b_studies / f"{case}_s{seed}"
    if (given / "truth.json").is_file():
        return given
    if config.accuracy.phantom_b is None:
        raise ValueError("phantom B job without a generator script")
    return Path(cached_study(config.accuracy.cache, case, seed, config.accuracy.phantom_b).folder)


def _b_side(truth: PhantomBTruth, role: str | None) -> str | None:
    """The hip of a role in a phantom B study (the generator picks the ITOH side from the seed)."""
    if role is None:
        return None
    affected = [s for s in ("right", "left") if truth.sides[s].present]
    normal = [s for s in ("right", "left") if not truth.sides[s].present]
    pick = affected if role == "affected" else normal
    return pick[0] if pick else None


def prepare_study(row: Row, seed: int, config: Config) -> Study:
    """Generate (or find in the cache) the row's study for one seed."""
    if row.generator == "own":
        return prepare(Job("own", row.case, seed, row.variants), config.accuracy)
    base = b_base(config, row.case, seed)
    side = _b_side(PhantomBTruth.load(base), row.side_role)
    folder = config.accuracy.cache / "b-perturbed" / f"{row.case}_s{seed}_{row.situation}_{side or 'default'}"
    if not (folder / "truth.json").is_file():
        try:
            perturb(base, folder, row.situation, side=side, seed=seed)
        except PerturbError:
            if not (folder / "truth.json").is_file():  # not a lost race with another process
                raise
    truth = PhantomBTruth.load(folder)
    return Study(folder.name, folder / "dicom", folder / MASK_FILE, truth.sides)


def _extra_fields(sr: SideResult) -> dict[str, str]:
    """Result fields beyond the plain measurements that speak to these situations, as text
    (``imaged``, ``metal``, ``assessable`` only when they say no, or yes for metal)."""
    out = {}
    for name in (*FLAG_FIELDS, *COVERAGE_FIELDS, *UNCERTAINTY_FIELDS, *HALF_WIDTH_FIELDS):
        value = getattr(sr, name, None)
        if value is not None and not (name in FLAG_FIELDS and value is (name != "metal")):
            dumped = value.model_dump() if hasattr(value, "model_dump") else value
            out[name] = json.dumps(dumped, sort_keys=True, default=str)
    return out


def _interval(sr: SideResult, texts: Sequence[str]) -> tuple[float, float] | None:
    """A reported volume interval (mL) for a hip: from a result field, or stated in its words."""
    for name in UNCERTAINTY_FIELDS:
        value = getattr(sr, name, None)
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return float(value[0]), float(value[1])
    volume = sr.oedema_volume_ml
    for name in HALF_WIDTH_FIELDS:
        value = getattr(sr, name, None)
        if isinstance(value, (int, float)) and volume is not None:
            return volume - float(value), volume + float(value)
    for text in texts:
        if m := _RANGE.search(text):
            return float(m.group(1)), float(m.group(2))
        if m := _PLUS_MINUS.search(text):
            return float(m.group(1)) - float(m.group(2)), float(m.group(1)) + float(m.group(2))
    return None


def _hip_rows(study: Study, result: AnalysisResult, out: Path) -> list[HipRow]:
    """Truth and report per hip (``evaluate`` scores side and volume)."""
    raw = json.loads((study.truth_mask.parent / "truth.json").read_text(encoding="utf-8"))["sides"]
    scored: dict[str, Hip] = {h.side: h for h in evaluate(study, result, out)}
    rows = []
    for side in LABELS:
        t, hip = raw[side], scored[side]
        sr = result.sides.get(side)
        row = HipRow(side=side, truth_present=hip.truth_present, truth_ml=hip.truth_ml,
                     imaged=bool(t.get("imaged", True)), metal=bool(t.get("metal", False)),
                     coverage=dict(t.get("coverage") or {}), side_ok=hip.side_ok, vol_err_pct=hip.vol_err_pct)
        if sr is not None:
            row.localized, row.present, row.volume_ml = sr.localized, sr.present, sr.oedema_volume_ml
            row.reason, row.flags = sr.reason, _extra_fields(sr)
        if result.status != "analyzed":
            row.reason = f"{result.status}: {result.reason}"
        rows.append(row)
    return rows


def _volume_ok(hip: HipRow, tolerance: float) -> tuple[bool, str]:
    """Side right and, on an affected hip, volume within ``tolerance`` %; on a normal one < 1 mL."""
    if not hip.localized or hip.present is None:
        return False, "no result"
    if not hip.side_ok:
        return False, "oedema on the wrong side"
    if hip.truth_present:
        err = hip.vol_err_pct if hip.vol_err_pct is not None else -100.0
        return abs(err) <= tolerance, f"volume {err:+.0f} %"
    volume = hip.volume_ml or 0.0
    return volume < FALSE_ML_MAX, f"{volume:.1f} mL on a normal hip"


def judge(outcome: Outcome, results: dict[str, SideResult]) -> None:
    """Set each hip's verdict (and the study's, for a moved T1) against the situation's acceptance."""
    situation = outcome.row.situation
    words = [outcome.reason, *outcome.warnings]
    for hip in outcome.hips:
        text = " | ".join([hip.reason, *hip.flags.values(), *[w for w in outcome.warnings if hip.side in w.lower()]])
        if not hip.imaged:
            said = _has(text, NOT_IMAGED) or hip.flags.get("imaged") == "false"
            hip.verdict = said and hip.present is None
            hip.why = "said 'not imaged'" if hip.verdict else ("not imaged said, findings reported" if said
                                                               else "not said 'not imaged'")
        elif hip.metal:
            said = _has(text, METAL) or hip.flags.get("metal") == "true"
            hip.verdict = said and hip.present is None
            hip.why = "not assessable: metal" if hip.verdict else ("metal said, oedema reported" if said else "metal not said")
        elif situation == "partial_coverage":
            fields = any(name in hip.flags for name in COVERAGE_FIELDS)
            flagged = _has(text, COVERAGE)
            fraction = fields or bool(_FRACTION.search(text))
            hip.verdict = flagged and fraction
            hip.why = "flagged with a fraction" if hip.verdict else ("flagged, no fraction" if flagged else "not flagged")
        else:
            hip.verdict, hip.why = _volume_ok(hip, VOLUME_TOLERANCE.get(situation, 15.0))
            interval = _interval(results[hip.side], [text]) if hip.side in results else None
            if not hip.verdict and situation == "gapped" and interval is not None:
                hip.verdict = interval[0] <= hip.truth_ml <= interval[1]
                hip.why += f"; interval {interval[0]:.0f}-{interval[1]:.0f} mL {'holds' if hip.verdict else 'misses'} the truth"
            if not hip.verdict and situation == "coil_shading" and _has(" ".join([text, *words]), SHADING):
                hip.verdict, hip.why = True, hip.why + "; flagged"
    if situation == "t1_shifted":
        outcome.verdict = _has(" ".join(words + [h.reason for h in outcome.hips]), T1_HANDLED)
        outcome.why = "T1 registered or flagged" if outcome.verdict else "moved T1 neither registered nor flagged"


def run_job(row: Row, seed: int, config: Config) -> Outcome:
    """Generate, analyse and judge one study; never raises (a crash becomes an "error" outcome)."""
    outcome = Outcome(row, seed)
    start = time.perf_counter()
    try:
        study = prepare_study(row, seed, config)
        # imported here: the analysis is being changed, and a broken import fails studies, not the run
        from workers.pipeline import analyze_study_dir

        out = config.accuracy.out / row.generator / f"{study.name}"
        result = analyze_study_dir(study.input_dir, out, dicom_outputs=False)
        outcome.status, outcome.reason = result.status, result.reason
        outcome.warnings = list(result.quality.warnings)
        outcome.t1_used = result.series_used.t1
        outcome.hips = _hip_rows(study, result, out)
        judge(outcome, dict(result.sides))
    except Exception as exc:  # the benchmark's boundary: record the study as failed, go on
        traceback.print_exc(file=sys.stderr)
        outcome.note = f"{type(exc).__name__}: {exc}"[:200]
    outcome.seconds = time.perf_counter() - start
    return outcome


def _truth_text(hip: HipRow) -> str:
    if not hip.imaged:
        return "not imaged"
    if hip.metal:
        return "metal implant"
    cov = hip.coverage.get("oedema" if hip.truth_present else "head")
    extra = f" cov {cov:.2f}" if cov is not None and cov < 0.995 else ""
    return (f"+{hip.truth_ml:6.1f} mL" if hip.truth_present else "-  normal ") + extra


def _reported_text(hip: HipRow) -> str:
    if not hip.localized or hip.present is None:
        return "withheld"
    return f"{'+' if hip.present else '-'}{hip.volume_ml or 0.0:6.1f} mL"


VERDICT = {True: "ok", False: "FAIL", None: "-"}


def print_table(outcomes: Sequence[Outcome]) -> None:
    """One line per hip; the study's status, warnings and T1 below its hips."""
    header = (f"{'gen':<4}{'situation':<17}{'study':<38}{'seed':>4} {'side':<6}{'truth':<19}{'reported':<12}"
              f"{'err %':>7} {'verdict':<8}why / reason / flags")
    print(header)
    print("-" * len(header))
    for o in outcomes:
        lead = f"{o.row.generator:<4}{o.row.situation:<17}{o.row.label:<38}{o.seed:>4} "
        if not o.hips:
            print(f"{lead}{'-':<6}{o.status}: {o.note or o.reason}")
            continue
        for hip in o.hips:
            err = "-" if hip.vol_err_pct is None else f"{hip.vol_err_pct:+.1f}"
            tail = "; ".join(t for t in (hip.why, hip.reason, ", ".join(f"{k}={v}" for k, v in hip.flags.items())) if t)
            print(f"{lead}{hip.side:<6}{_truth_text(hip):<19}{_reported_text(hip):<12}{err:>7} "
                  f"{VERDICT[hip.verdict]:<8}{tail}")
        study = f"status {o.status}" + (f" ({o.reason})" if o.reason else "") + (
            f"; T1 used: {'yes' if o.t1_used else 'no'}")
        if o.verdict is not None:
            study += f"; {VERDICT[o.verdict]}: {o.why}"
        print(f"{'':<8}{study}; {o.seconds:.0f} s")
        for w in o.warnings:
            print(f"{'':<10}warning: {w}")


def summary(outcomes: Sequence[Outcome]) -> dict[str, dict[str, Any]]:
    """Per situation and generator: judged items passing / judged, and the verdict."""
    out: dict[str, dict[str, Any]] = {}
    for situation in ACCEPTANCE:
        mine = [o for o in outcomes if o.row.situation == situation]
        if not mine:
            continue
        entry: dict[str, Any] = {}
        for generator in ("own", "b"):
            judged: list[bool] = []
            for o in mine:
                if o.row.generator != generator:
                    continue
                if not o.hips:
                    judged.append(False)  # crashed or not generated
                elif o.verdict is not None:
                    judged.append(o.verdict)
                else:
                    judged += [h.verdict for h in o.hips if h.verdict is not None]
            entry[generator] = (sum(judged), len(judged))
        passed = [p == n for p, n in entry.values() if n]
        entry["verdict"] = "PASS" if passed and all(passed) else "FAIL" if passed else "n/a"
        out[situation] = entry
    return out


def print_summary(table: dict[str, dict[str, Any]]) -> None:
    """The acceptance block: one line per situation."""
    print("\nPer situation (items passing / judged: hips, or studies for t1_shifted):")
    header = f"{'situation':<18}{'own':>9}{'b':>9}  {'verdict':<8}acceptance"
    print(header)
    print("-" * len(header))
    for situation, entry in table.items():
        cells = [f"{entry[g][0]}/{entry[g][1]}" if entry[g][1] else "-" for g in ("own", "b")]
        print(f"{situation:<18}{cells[0]:>9}{cells[1]:>9}  {entry['verdict']:<8}{ACCEPTANCE[situation]}")
    verdicts = [e["verdict"] for e in table.values()]
    print(f"  => {'PASS' if verdicts and all(v == 'PASS' for v in verdicts) else 'FAIL'} "
          f"({sum(v == 'PASS' for v in verdicts)} of {len(verdicts)} situations pass)")


def run_all(jobs: Sequence[tuple[Row, int]], config: Config, workers: int) -> list[Outcome]:
    """Run the jobs in ``workers`` processes; outcomes in job order."""
    return run_in_pool(run_job, [(row, seed, config) for row, seed in jobs], workers,
                       lambda i, o: f"{o.row.generator} {o.row.label} s{o.seed}: {o.status}")


def _seeds(values: Sequence[int], name: str) -> list[int]:
    if len(values) < SEED_COUNT:
        print(f"protocols: note: {name} has {len(values)} seed(s); the acceptance asks for >= {SEED_COUNT}",
              file=sys.stderr)
    return list(values)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run every study, print the table and the summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generators", nargs="+", choices=["own", "b"], default=["own", "b"])
    parser.add_argument("--situations", nargs="+", choices=list(ACCEPTANCE), default=list(ACCEPTANCE))
    parser.add_argument("--seeds-own", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seeds-b", type=int, nargs="+", default=list(DEFAULT_SEEDS[:SEED_COUNT]))
    parser.add_argument("--size", choices=["small", "full"], default="full", help="own phantom size")
    parser.add_argument("--phantom-b", type=Path, default=None,
                        help="phantom_b.py (default: MARROWMAP_PHANTOM_B, else <repo>/../shared/phantom-b)")
    parser.add_argument("--jobs", type=int, default=2, help="studies run in parallel processes")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/marrowmap-protocol-cache"))
    parser.add_argument("--b-studies", type=Path, default=Path("/tmp/marrowmap-phantom-cache/b"),
                        help="phantom B studies <case>_s<seed> to read (never written); missing ones are "
                             "generated into --cache/b")
    parser.add_argument("--out", type=Path, default=Path("/tmp/marrowmap-protocols"))
    parser.add_argument("--json", type=Path, default=None, help="also write the outcomes and summary as JSON")
    args = parser.parse_args(argv)
    configure_logging("WARNING", "console")
    config = Config(Setup(cache=args.cache, out=args.out, png=None, small=args.size == "small",
                          phantom_b=locate(args.phantom_b) if "b" in args.generators else None),
                    b_studies=args.b_studies)
    seeds = {"own": _seeds(args.seeds_own, "--seeds-own"), "b": _seeds(args.seeds_b, "--seeds-b")}
    jobs = [(row, seed) for row in ROWS if row.generator in args.generators and row.situation in args.situations
            for seed in seeds[row.generator]]
    outcomes = run_all(jobs, config, max(1, args.jobs))
    title = (f"MarrowMap on real hip protocols (issue 11): own phantom ({args.size}) seeds {seeds['own']}, "
             f"phantom B seeds {seeds['b']}")
    print(f"\n{title}\n{'=' * len(title)}\n")
    print_table(outcomes)
    table = summary(outcomes)
    print_summary(table)
    times = [o.seconds for o in outcomes]
    if times:
        print(f"\nStudies: {len(times)}, {statistics.fmean(times):.0f} s each on average (generation included)")
    if args.json:
        args.json.write_text(json.dumps({"outcomes": [asdict(o) for o in outcomes], "summary": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
