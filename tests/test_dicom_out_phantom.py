"""End to end: phantom study -> analyze_study_dir -> build_outputs -> checks a PACS / radiologist relies on.

One module-scoped build per case, on the session's analysed small phantoms. Cases:
normal, itoh_left (as an enhanced multi-frame STIR with a UTF-8 name), bilateral, avn_left.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image

from marrowmap.settings import Settings
from tests.analysis_fixtures import AnalysedFactory, analysed
from tests.dicom_out_fixtures import (
    evaluations_of,
    findings_by_tracking,
    laterality,
    read_report,
    values_by_site,
)
from tests.phantom_fixtures import phantom_study
from workers.analysis.maps import AnalysisMaps
from workers.analysis.result import AnalysisResult, OutputFile
from workers.dicom_out import build_outputs, draft_findings
from workers.dicom_out.build import overlay_frames
from workers.dicom_out.findings import fmt_ml
from workers.dicom_out.geometry import edge_letters
from workers.dicom_out.render import PANEL_WIDTH, overlay_image_box
from workers.dicom_out.stack import keep_reported_oedema, sample_maps
from workers.io.load import load_study
from workers.io.select import select_series
from workers.io.types import LoadedSeries
from workers.phantom import truth_dir
from workers.pipeline import MAP_FILES

__all__ = ["analysed", "phantom_study"]  # session fixtures used below
pytestmark = pytest.mark.slow

#: case -> (variants, seed); seeds/variants shared with the analysis tests reuse their session cache
CASES: dict[str, tuple[tuple[str, ...], int]] = {
    "normal": ((), 1),
    "itoh_left": (("enhanced_stir", "nonascii_utf8"), 0),
    "bilateral": ((), 0),
    "avn_left": ((), 0),
}


@dataclass(frozen=True)
class Built:
    case: str
    input_dir: Path
    out_dir: Path
    result: AnalysisResult
    fluid: LoadedSeries
    maps: AnalysisMaps
    outputs: list[OutputFile]


@pytest.fixture(scope="module", params=list(CASES))
def built(request: pytest.FixtureRequest, analysed: AnalysedFactory) -> Built:
    case = request.param
    variants, seed = CASES[case]
    run = analysed(case, *variants, seed=seed)
    assert run.result.status == "analyzed", run.result.reason
    study = load_study(run.study)
    fluid = select_series(study.loaded, study.problems).fluid_sensitive
    assert fluid is not None
    maps = AnalysisMaps(**{k: sitk.ReadImage(str(run.out / v)) for k, v in MAP_FILES.items()})
    outputs = build_outputs(run.result, fluid, maps, run.out, settings=Settings())
    return Built(case, run.study, run.out, run.result, fluid, maps, outputs)


def test_outputs_are_valid_dicom(built: Built) -> None:
    assert {o.kind for o in built.outputs} == {"seg", "sr", "sc_overlay", "sc_summary", "pmap", "kos"}
    overlays = [o for o in built.outputs if o.kind == "sc_overlay"]
    checked = [o for o in built.outputs if o.kind != "sc_overlay"] + [overlays[0], overlays[-1]]
    for o in checked:
        proc = subprocess.run(["dciodvfy", "-filename", str(built.out_dir / o.path)], capture_output=True,
                              text=True, timeout=60)
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], (o.path, errors)
    sr = next(o for o in built.outputs if o.kind == "sr")
    assert subprocess.run(["dsrdump", str(built.out_dir / sr.path)], capture_output=True, timeout=60).returncode == 0


def test_patient_name_and_study_survive(built: Built) -> None:
    source = pydicom.dcmread(next(p for p in sorted(built.input_dir.rglob("*.dcm"))), stop_before_pixels=True)
    for o in built.outputs:
        ds = pydicom.dcmread(built.out_dir / o.path, stop_before_pixels=True)
        for kw in ("SpecificCharacterSet", "PatientName", "PatientID", "StudyInstanceUID", "AccessionNumber",
                   "StudyID", "StudyDate"):
            assert ds.get(kw) == source.get(kw), (o.path, kw)


def test_sr_equals_result_json(built: Built) -> None:
    result = AnalysisResult.model_validate_json((built.out_dir / "result.json").read_text())
    sr = read_report(built.out_dir / next(o.path for o in built.outputs if o.kind == "sr"))
    findings = findings_by_tracking(sr)
    for name, side in result.sides.items():
        title = f"{name.capitalize()} hip BME" if side.present else f"{name.capitalize()} hip: no BME"
        [group] = findings[title]  # one group per hip finding
        assert laterality(group) == name.capitalize()
        assert group.finding_type is not None
        assert (group.finding_type.value == "79654002") == bool(side.present)  # Edema only when found
        values = values_by_site(group)
        if side.present:
            assert values[("Volume", None, None)] == pytest.approx(side.oedema_volume_ml, rel=1e-12)
            for site, pct in (("2812003", side.head_involvement_pct), ("29627003", side.neck_involvement_pct)):
                assert values.get(("Extent", site, None)) == (pytest.approx(pct, rel=1e-12) if pct else None)
            if side.mean_signal_ratio is not None:
                assert values[("Fluid-sensitive signal ratio to reference marrow", None, "Mean")] == \
                    pytest.approx(side.mean_signal_ratio, rel=1e-12)
        else:
            assert values == {} and evaluations_of([group]) == {"Edema": "Absent"}
        effusion = findings.get(f"{name.capitalize()} hip joint effusion")
        assert (effusion is not None) == bool(side.effusion)
        if effusion is not None:
            assert values_by_site(effusion[0])[("Volume", None, None)] == \
                pytest.approx(side.effusion_volume_ml, rel=1e-12)
    for title, members in findings.items():  # every finding has its outline (OHIF)
        assert len(members) == 1 and members[0].roi, title
    container = sr[0].ContentSequence[-1]
    texts = [i.TextValue for i in container.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "121070"]
    assert texts == [draft_findings(result)]
    seg = hd.seg.segread(built.out_dir / next(o.path for o in built.outputs if o.kind == "seg"))
    labels = {seg.get_segment_description(n).segment_label for n in seg.segment_numbers}
    for name, side in result.sides.items():
        assert (f"{name.capitalize()} hip BME" in labels) == bool(side.present)


def test_findings_follow_result_json(built: Built) -> None:
    """Every side is worded as result.json has it (whether the analysis finds the phantom's lesion is the
    analysis benchmark's job; the text must never contradict result.json)."""
    truth = json.loads((truth_dir(built.input_dir.parent) / "truth.json").read_text())
    assert truth["case"] == built.case
    result = AnalysisResult.model_validate_json((built.out_dir / "result.json").read_text())
    text = draft_findings(result)
    assert text.count("correlate clinically") == 1
    for name, side in result.sides.items():
        if side.present:
            assert f"{name.capitalize()} hip: " in text and "oedema of the " in text
            assert f", {fmt_ml(side.oedema_volume_ml or 0.0)}" in text
        else:
            assert f"{name.capitalize()} hip: no bone marrow oedema" in text
        if side.effusion:
            assert f"{name} hip joint effusion ({fmt_ml(side.effusion_volume_ml or 0.0)}".lower() in text.lower()
        elif side.effusion is False and side.present:
            assert f"No {name} hip joint effusion." in text


def test_overlay_colour_on_the_truth_lesion_side(built: Built, tmp_path: Path) -> None:
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(truth_dir(built.input_dir.parent) / "oedema.nii.gz")))
    lesion = {"itoh_left": 2, "avn_left": 2}.get(built.case)
    if lesion is None:
        pytest.skip("unilateral cases only: the other hip is the normal side")
    z = int(np.argmax((truth == lesion).sum(axis=(1, 2))))
    reported = {v for v, s in ((1, "right"), (2, "left")) if built.result.sides[s].present}
    shown = overlay_frames(keep_reported_oedema(sample_maps(built.fluid, built.maps), reported))
    index = [f.frame.z for f in shown].index(z)
    overlay = [o for o in built.outputs if o.kind == "sc_overlay"][index]
    png = tmp_path / "overlay.png"
    subprocess.run(["dcmj2pnm", "--write-png", str(built.out_dir / overlay.path), str(png)], check=True, timeout=60)
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(np.int32)
    left, top, width, height = overlay_image_box(shown[index])
    assert rgb.shape[1] == width + PANEL_WIDTH
    image = rgb[top:top + height, left:left + width]
    colour = (image[..., 0] > 100) & (image[..., 0] - image[..., 2] > 60) & (image[..., 0] >= image[..., 1])
    left_on_right = edge_letters(shown[index].frame)["right"].startswith("L")
    half = width // 2
    patient_left = colour[:, half:] if left_on_right else colour[:, :half]
    patient_right = colour[:, :half] if left_on_right else colour[:, half:]
    # colour on the lesion where the result reports it (whether it finds it is the analysis benchmark's job)
    if built.result.sides["left"].present and (shown[index].oedema == 2).any():
        assert patient_left.sum() > 100
    else:
        assert patient_left.sum() == 0
    # colour only where the reported oedema is: none on the right hip unless the result reports it there
    reported_right = built.result.sides["right"].present and bool((shown[index].oedema == 1).any())
    if not reported_right:
        assert patient_right.sum() == 0
