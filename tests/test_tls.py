"""DICOM TLS with a CA made in the test: the listener (dcmtk storescu +tls and pynetdicom; plain TCP,
no certificate and a certificate of another CA refused), its health check, and results sent to a
TLS-only pynetdicom PACS."""

from __future__ import annotations

import json
import ssl
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE

from marrowmap.settings import load_settings
from tests import dicom_factory as factory
from tests.listener_fixtures import CALLED_AE, MARROWMAP, Harness, Proc, harness, wait_for  # noqa: F401
from tests.pacs_peers import running_test_pacs, write_result_files
from tests.tls_fixtures import Pki, pki  # noqa: F401
from workers.pacs.store_scu import Outcome, send_instances

pytestmark = pytest.mark.integration

STORESCU = "/usr/bin/storescu"  # dcmtk's (pynetdicom installs a script of the same name)


def _tls_env(pki: Pki) -> dict[str, str]:  # noqa: F811
    return {
        "MARROWMAP_LISTENER_TLS": "true",
        "MARROWMAP_LISTENER_TLS_CLIENT_CERT": "true",
        "MARROWMAP_TLS_CERT_FILE": str(pki.server.cert),
        "MARROWMAP_TLS_KEY_FILE": str(pki.server.key),
        "MARROWMAP_TLS_CA_FILE": str(pki.ca),
        "MARROWMAP_ALLOWED_CALLING_AETS": "PACS01@127.0.0.1,PYSCU@127.0.0.1,PLAIN@127.0.0.1,ROGUE@127.0.0.1",
    }


def _start_tls_listener(harness: Harness, pki: Pki) -> Proc:  # noqa: F811
    env = harness.env(**_tls_env(pki))
    proc = harness._spawn("listen", ["listen"], env)

    def healthy() -> bool:
        assert proc.popen.poll() is None, proc.log_path.read_text()
        run = subprocess.run([*MARROWMAP, "health", "listener"], env=env, capture_output=True, text=True, timeout=30)
        return run.returncode == 0

    wait_for(healthy, 30, "`marrowmap health listener` over TLS", interval=0.3)
    return proc


def _storescu(port: int, files: list[Path], calling: str, *tls: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STORESCU, *tls, "-aet", calling, "-aec", CALLED_AE, "127.0.0.1", str(port), *map(str, files)],
                          capture_output=True, text=True, timeout=60)


def test_tls_listener_stores_tls_peers_and_refuses_the_others(harness: Harness, pki: Pki,  # noqa: F811
                                                             tmp_path: Path) -> None:
    listener = _start_tls_listener(harness, pki)
    study = factory.study("tls-study", (factory.SeriesSpec("COR STIR", 2),))
    files = factory.write(study, tmp_path / "study")
    port = harness.port

    dcmtk = _storescu(port, files[:1], "PACS01", "+tls", str(pki.client.key), str(pki.client.cert), "-pw",
                      "+cf", str(pki.ca))
    assert dcmtk.returncode == 0, dcmtk.stderr

    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(pki.client.cert, pki.client.key)
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(str(dcmread(files[1]).SOPClassUID))
    assoc = ae.associate("127.0.0.1", port, ae_title=CALLED_AE, tls_args=(context, "127.0.0.1"))
    assert assoc.is_established
    assert assoc.send_c_store(dcmread(files[1])).Status == 0
    assoc.release()

    plain = _storescu(port, files[:1], "PLAIN")
    no_cert = _storescu(port, files[:1], "PLAIN", "+tla", "+cf", str(pki.ca))
    rogue = _storescu(port, files[:1], "ROGUE", "+tls", str(pki.rogue.key), str(pki.rogue.cert), "-pw",
                      "+cf", str(pki.ca))
    assert plain.returncode and no_cert.returncode and rogue.returncode

    stored = {p.stem for p in harness.spool.glob("*/*/*/*.dcm")} | {p.stem for p in harness.spool.glob("ready/*/*/*/*.dcm")}
    assert stored == {str(dcmread(f).SOPInstanceUID) for f in files}
    refused = wait_for(lambda: r if len(r := listener.events("connection.refused")) >= 3 else None, 5, "3 refusals")
    assert sorted(r["reason"] for r in refused) == [
        "TLS handshake failed: CERTIFICATE_VERIFY_FAILED",  # a certificate of another CA
        "TLS handshake failed: PEER_DID_NOT_RETURN_A_CERTIFICATE",
        "TLS handshake failed: WRONG_VERSION_NUMBER",  # plain DICOM on the TLS port
    ]
    audit = [json.loads(line) for line in (harness.spool / "audit" / "audit.jsonl").read_text().splitlines()]
    logins = [e["ActiveParticipant"][0] for e in audit
              if e["EventIdentification"]["EventID"]["originalText"] == "User Authentication"]
    assert {(p["UserID"], p["TLS"], p.get("TLSPeerSubject")) for p in logins} >= {
        ("PACS01", True, "PACS01"), ("PYSCU", True, "PACS01")}


def test_results_sent_to_a_tls_only_pacs(pki: Pki, tmp_path: Path) -> None:  # noqa: F811
    results = write_result_files(tmp_path / "results")
    paths = [results["SR"], results["SC"], results["SEG"]]
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    server.load_cert_chain(pki.server.cert, pki.server.key)
    server.verify_mode = ssl.CERT_REQUIRED  # the PACS wants our client certificate too
    with running_test_pacs(ssl_context=server) as pacs:
        common = {"pacs_ae_title": pacs.ae_title, "pacs_host": "127.0.0.1", "pacs_port": pacs.port,
                  "network_timeout_seconds": 10}
        tls = load_settings(pacs_tls=True, tls_ca_file=pki.ca, tls_cert_file=pki.client.cert,
                            tls_key_file=pki.client.key, **common)
        report = send_instances(paths, settings=tls)
        plain = send_instances(paths, settings=load_settings(**common))
        untrusted = send_instances(paths, settings=load_settings(
            pacs_tls=True, tls_ca_file=pki.rogue.cert, tls_cert_file=pki.client.cert,
            tls_key_file=pki.client.key, **common))
    assert report.state == "sent", report.summary
    assert len(pacs.stored) == 3
    assert plain.state == "send_failed" and plain.transient
    assert untrusted.state == "send_failed"
    assert {i.reason for i in untrusted.instances} == {"connection refused, unreachable or TLS handshake failed"}
    assert all(i.outcome is Outcome.FAILED for i in plain.instances)
