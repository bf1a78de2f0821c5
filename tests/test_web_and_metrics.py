"""After a round trip through Orthanc: the /metrics of the listener and of the worker count what
happened, and the web status page - in headless Chromium (Debian's, driven by playwright-core) -
shows the finished job with its summary key image, and its Resend button sends the results again."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from marrowmap.jobstore import JobState
from service.spool import RESULT_FILE
from tests.e2e_pipeline import dicom_files, phantom_study, start_marrowmap, study_uid_of
from tests.listener_fixtures import MARROWMAP, Harness, free_port, harness, wait_for  # noqa: F401  (fixture)
from tests.orthanc_harness import Modality, Orthanc, running_orthanc
from workers.tasks import RESULT_NAME

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
#: playwright-core as tools/viewer_check/run.sh installs it (the same version; .ci/run installs it too).
PLAYWRIGHT_VERSION = re.findall(r'^PLAYWRIGHT_VERSION="(.+)"', (REPO / "tools/viewer_check/run.sh").read_text(),
                                re.MULTILINE)[0]
PLAYWRIGHT = (Path(os.environ.get("MARROWMAP_VIEWER_CACHE", Path.home() / ".cache/marrowmap-viewer"))
              / f"playwright-core-{PLAYWRIGHT_VERSION}/node_modules/playwright-core")


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics endpoint: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """One sample (0 when absent: a counter never incremented has no labelled sample)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def orthanc(harness: Harness, tmp_path: Path) -> Iterator[Orthanc]:  # noqa: F811
    with running_orthanc(tmp_path / "orthanc",
                         modalities={"marrowmap": Modality("MARROWMAP", harness.port)}) as pacs:
        yield pacs


def test_result_file_name_is_the_workers() -> None:
    assert RESULT_FILE == RESULT_NAME


def test_metrics_and_web_page_after_a_round_trip(harness: Harness, orthanc: Orthanc,  # noqa: F811
                                                 tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    for tool, hint in ((CHROMIUM, "apt-get install -y chromium"), (shutil.which("node"), "apt-get install -y nodejs"),
                       (PLAYWRIGHT / "package.json", "bash .ci/run installs playwright-core")):
        if tool is None or not Path(tool).exists():
            pytest.fail(f"{tool or 'node'} is missing: {hint}")
    ports = {"MARROWMAP_LISTENER_METRICS_PORT": free_port(), "MARROWMAP_WORKER_METRICS_PORT": free_port(),
             "MARROWMAP_WEB_PORT": free_port()}
    env = {k: str(v) for k, v in ports.items()}
    mm = start_marrowmap(harness, pacs_ae=orthanc.aet, pacs_port=orthanc.dicom_port, **env)
    web = harness._spawn("web", ["web"], harness.env(**env, MARROWMAP_PACS_AE_TITLE=orthanc.aet,
                                                     MARROWMAP_PACS_PORT=str(orthanc.dicom_port)))
    phantom = phantom_study(tmp_path_factory.getbasetemp())
    study_uid = study_uid_of(phantom)
    inputs = [orthanc.upload(p) for p in dicom_files(phantom)]
    orthanc.send_study(study_uid, "marrowmap")
    [job] = mm.wait_final(study_uid, timeout=180)
    assert job.state is JobState.SENT, f"{job.reason}\n{mm.describe()}"

    # /metrics of both processes count this one study
    listener = scrape(ports["MARROWMAP_LISTENER_METRICS_PORT"])
    assert value(listener, "marrowmap_instances_received_total", status="success") == len(inputs)
    assert value(listener, "marrowmap_studies_sealed_total") == 1
    assert value(listener, "marrowmap_studies_skipped_total") == 0
    assert value(listener, "marrowmap_jobs_queued_total") == 1
    assert value(listener, "marrowmap_jobs", state="sent") == 1
    assert sum(v for (name, _), v in listener.items() if name == "marrowmap_jobs") == 1
    assert value(listener, "marrowmap_queue_depth", queue="analysis") == 0
    assert value(listener, "marrowmap_spool_free_bytes") > 0 and value(listener, "marrowmap_broker_up") == 1
    worker = scrape(ports["MARROWMAP_WORKER_METRICS_PORT"])
    result = json.loads((mm.results_dir(job.job_id) / RESULT_FILE).read_text())
    assert value(worker, "marrowmap_jobs_finished_total", state="analysed") == 1
    assert value(worker, "marrowmap_jobs_finished_total", state="sent") == 1
    assert value(worker, "marrowmap_analysis_seconds_count", status="analyzed") == 1
    assert value(worker, "marrowmap_analysis_seconds_sum", status="analyzed") == pytest.approx(
        result["timings_s"]["total"], abs=1e-3)
    assert value(worker, "marrowmap_output_seconds_count") == 1
    assert value(worker, "marrowmap_send_attempts_total") == 1 and value(worker, "marrowmap_send_seconds_count") == 1
    assert not [k for k in worker if k[0] == "marrowmap_send_failures_total"]

    # the web page, in a real browser: the finished job with its thumbnail; Resend sends again
    base = f"http://127.0.0.1:{ports['MARROWMAP_WEB_PORT']}"
    wait_for(lambda: web.popen.poll() is None and _answers(f"{base}/healthz"), 30, "the web page", 0.3)
    shots = tmp_path / "shots"
    shots.mkdir()
    run = subprocess.run(["node", str(REPO / "tests" / "web_page.mjs"), "--base", base, "--job", job.job_id,
                          "--out", str(shots), "--chromium", str(CHROMIUM), "--playwright", str(PLAYWRIGHT)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["row_state"] == "sent" and not seen["errors"]
    assert seen["thumb_natural"][0] >= 200 and seen["thumb_natural"][1] >= 100  # the image decoded
    assert "Listener" in seen["health"] and "1 of 1 beating" in seen["health"]
    assert "results queued for sending again" in seen["message"]
    assert seen["after_resend_state"] in ("sending", "sent")
    assert "resend requested (was sent)" in seen["history"]
    again = wait_for(lambda: (r := mm.store.get(job.job_id)) is not None and r.state is JobState.SENT
                     and any(c.reason.startswith("resend requested") for c in r.history) and r, 60, "the resend")
    assert [c.state for c in again.history].count(JobState.SENDING) >= 3  # first send, resend, its attempt
    assert value(scrape(ports["MARROWMAP_WORKER_METRICS_PORT"]), "marrowmap_send_attempts_total") == 2
    for name in ("web_status.png", "web_job_resend.png"):
        assert (shots / name).stat().st_size > 20_000, name  # a real screenshot, not a blank page
    print(f"screenshots: {shots}")


def test_web_page_on_the_network_needs_a_login(harness: Harness, tmp_path: Path) -> None:  # noqa: F811
    open_page = subprocess.run(
        [*MARROWMAP, "web"], env=harness.env(MARROWMAP_WEB_HOST="0.0.0.0", MARROWMAP_WEB_PORT=str(free_port())),
        capture_output=True, text=True, timeout=60)
    assert open_page.returncode == 2 and "needs a login" in open_page.stderr.strip().splitlines()[-1]
    password = tmp_path / "web_password"
    password.write_text("correct-horse-battery\n")
    port = free_port()
    web = harness._spawn("web", ["web"], harness.env(MARROWMAP_WEB_PORT=str(port),
                                                      MARROWMAP_WEB_PASSWORD_FILE=str(password)))
    wait_for(lambda: web.popen.poll() is None and _answers(f"http://127.0.0.1:{port}/healthz"), 30, "the web page")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
    assert refused.value.code == 401 and "Basic" in refused.value.headers["WWW-Authenticate"]
    login = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={
        "Authorization": "Basic " + base64.b64encode(b"marrowmap:correct-horse-battery").decode()})
    with urllib.request.urlopen(login, timeout=10) as page:
        assert page.status == 200 and b"Studies and jobs" in page.read()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
