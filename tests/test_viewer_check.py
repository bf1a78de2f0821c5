"""MarrowMap's outputs seen in a real viewer: OHIF v3 served by Orthanc, in headless Chromium.

The end-to-end test needs npm downloads (``@ohif/app``, ``playwright-core``) on first use and
about two minutes, so it runs only with ``MARROWMAP_VIEWER_CHECK=1`` (never in normal CI):

    MARROWMAP_VIEWER_CHECK=1 pytest tests/test_viewer_check.py -m slow -q

The rebasing of OHIF's prebuilt dist onto a sub-path is checked always (it is quick).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "viewer_check"
sys.path.insert(0, str(TOOL))

from rebase_ohif import RebaseError, rebase  # noqa: E402


def _fake_dist(root: Path) -> Path:
    dist = root / "dist"
    dist.mkdir()
    (dist / "index.html").write_text(
        '<script>window.PUBLIC_URL="/"</script><link href="/app.bundle.css">'
        '<script src="/app-config.js"></script><a href="//cdn.example/x">x</a>',
        encoding="utf-8",
    )
    (dist / "app.bundle.1.js").write_text('a;__webpack_require__.p = "/";b', encoding="utf-8")
    (dist / "app.bundle.css").write_text("@font-face{src:url(/f.woff2)}", encoding="utf-8")
    (dist / "manifest.json").write_text('{"icons":[{"src":"/assets/i.png"}]}', encoding="utf-8")
    return dist


def test_rebase_moves_root_references_under_the_prefix(tmp_path: Path) -> None:
    dist = _fake_dist(tmp_path)
    assert rebase(dist, "/ohif/") == 3
    html = (dist / "index.html").read_text(encoding="utf-8")
    assert 'window.PUBLIC_URL="/ohif/"' in html
    assert 'href="/ohif/app.bundle.css"' in html and 'src="/ohif/app-config.js"' in html
    assert 'href="//cdn.example/x"' in html  # protocol-relative links are left alone
    assert '__webpack_require__.p = "/ohif/";' in (dist / "app.bundle.1.js").read_text(encoding="utf-8")
    assert "url(/ohif/f.woff2)" in (dist / "app.bundle.css").read_text(encoding="utf-8")
    assert '"/ohif/assets/i.png"' in (dist / "manifest.json").read_text(encoding="utf-8")


def test_rebase_refuses_an_unknown_build(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<html></html>", encoding="utf-8")
    with pytest.raises(RebaseError):
        rebase(dist, "/ohif/")
    with pytest.raises(ValueError):
        rebase(dist, "ohif")


needs_viewer = pytest.mark.skipif(
    os.environ.get("MARROWMAP_VIEWER_CHECK") != "1",
    reason="set MARROWMAP_VIEWER_CHECK=1 to run OHIF in headless Chromium (npm downloads, ~2 min)",
)


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_viewer
def test_outputs_show_in_ohif(tmp_path: Path) -> None:
    for tool in ("npm", "node", "/usr/bin/chromium", "/usr/sbin/Orthanc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    from workers.phantom.study import dicom_dir, generate_study
    from workers.pipeline import analyze_study_dir

    study_dir, res_dir = dicom_dir(tmp_path / "in"), tmp_path / "res"
    generate_study(tmp_path / "in", "itoh_left", seed=1, small=True)
    result = analyze_study_dir(study_dir, res_dir)
    assert result.status == "analyzed", result.reason
    assert {o.kind for o in result.outputs} == {"seg", "sr", "sc_overlay", "sc_summary", "pmap", "kos"}

    shots, report_file = tmp_path / "png", tmp_path / "report.json"
    proc = subprocess.run(
        ["bash", str(TOOL / "run.sh"), "--out", str(shots), "--report", str(report_file),
         str(study_dir), str(res_dir)],
        capture_output=True, text=True, timeout=840, check=False,
    )
    assert report_file.is_file(), proc.stderr[-3000:]
    report = json.loads(report_file.read_text(encoding="utf-8"))
    shown = {Path(s["file"]).name: s for s in report["shots"]}

    overlay = shown["ohif_sc_overlay.png"]
    assert overlay["shown"] and overlay["colour_pixels_in_image"] > 0
    assert shown["ohif_sc_summary.png"]["shown"]
    seg = shown["ohif_seg_stir.png"]
    assert seg["hydrated"] and seg["on_source"]
    assert any(label.startswith("Left") for label in seg["segments"]), seg["segments"]
    pmap = shown["ohif_pmap_stir.png"]
    assert pmap["on_source"] and "ohif_pmap_off.png" in shown
    assert shown["ohif_kos.png"]["listed"]
    sr = shown["ohif_sr.png"]
    assert sr["annotation_text"], report["problems"]
    for name in shown:
        assert (shots / name).stat().st_size > 20_000  # a real screenshot, not a blank page
    assert proc.returncode == 0, report["problems"]
