"""A real Orthanc (Debian package, /usr/sbin/Orthanc) as the PACS in tests.

Runs on free loopback ports with a temporary JSON config, storage and index; REST helpers to
upload, list, route a study to a modality (as a PACS auto-route does) and fetch instances.
Orthanc 1.10 binds its DICOM port on all interfaces (there is no bind-address option), so the
config only lets known modalities on 127.0.0.1 store or echo (DicomCheckModalityHost).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.pacs_peers import free_port

ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
START_TIMEOUT_SECONDS = 30.0

T = TypeVar("T")


class OrthancError(RuntimeError):
    """Orthanc did not start, or a REST call failed."""


def wait_for(predicate: Callable[[], T], *, timeout: float, interval: float = 0.25,
             what: str = "condition") -> T:
    """Poll ``predicate`` until it returns a truthy value; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Modality:
    """A DICOM peer Orthanc knows (may store to it, and may be sent to)."""

    ae_title: str
    port: int
    host: str = "127.0.0.1"


@dataclass
class Orthanc:
    """One Orthanc process and its REST API."""

    workdir: Path
    modalities: dict[str, Modality] = field(default_factory=dict)
    aet: str = "ORTHANC"
    dicomweb: bool = False
    lua_scripts: tuple[Path, ...] = ()
    stable_age_seconds: int = 3600
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    # --- lifecycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL of the REST API."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        """Orthanc's stdout/stderr."""
        return self.workdir / "orthanc.log"

    def config(self) -> dict[str, Any]:
        """The JSON configuration Orthanc runs with."""
        storage = self.workdir / "storage"
        config: dict[str, Any] = {
            "Name": "MarrowMapTestPACS",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomCheckModalityHost": True,
            "DicomModalities": {
                name: {"AET": m.ae_title, "Host": m.host, "Port": m.port, "AllowStore": True,
                       "AllowEcho": True}
                for name, m in self.modalities.items()
            },
            "DicomScuTimeout": 10,
            "DicomAssociationCloseDelay": 0,
            "OrthancExplorerEnabled": False,
            "WebDavEnabled": False,
            "HttpCompressionEnabled": False,
            "StableAge": self.stable_age_seconds,
            "ConcurrentJobs": 2,
            "SynchronousCMove": True,
            "LuaScripts": [str(p) for p in self.lua_scripts],
            "Plugins": [str(DICOMWEB_PLUGIN)] if self.dicomweb else [],
        }
        if self.dicomweb:
            config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
        return config

    def start(self) -> None:
        """Start Orthanc (again, with the same ports and storage) and wait until it answers."""
        if self.process is not None:
            raise OrthancError("Orthanc is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(ORTHANC_BINARY), str(config_path)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise OrthancError(f"Orthanc exited at start; log:\n{self._log_tail()}")
            if self.is_up():
                return
            time.sleep(0.1)
        self.stop()
        raise OrthancError(f"Orthanc did not answer within {START_TIMEOUT_SECONDS} s")

    def stop(self) -> None:
        """Stop Orthanc (SIGTERM, then SIGKILL after 15 s)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def is_up(self) -> bool:
        """True when the REST API answers."""
        try:
            self.get("/system")
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    def _log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # --- REST ------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes | None = None,
                 content_type: str = "application/json") -> bytes:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise OrthancError(f"{method} {path}: HTTP {exc.code}: {detail}") from None

    def get(self, path: str) -> Any:
        """GET a JSON resource."""
        return json.loads(self._request("GET", path))

    def post(self, path: str, payload: Any) -> Any:
        """POST JSON, return the JSON answer."""
        return json.loads(self._request("POST", path, json.dumps(payload).encode()))

    def upload(self, path: Path) -> str:
        """Upload one DICOM file; return its Orthanc instance id."""
        answer = json.loads(self._request("POST", "/instances", path.read_bytes(),
                                          "application/dicom"))
        return str(answer["ID"])

    def upload_folder(self, folder: Path) -> list[str]:
        """Upload every file under ``folder``; return the Orthanc instance ids."""
        return [self.upload(p) for p in sorted(folder.rglob("*")) if p.is_file()]

    def study_id(self, study_uid: str) -> str | None:
        """Orthanc id of a study by its Study Instance UID, or None."""
        matches = json.loads(self._request("POST", "/tools/lookup", study_uid.encode(), "text/plain"))
        if not isinstance(matches, list):
            raise OrthancError(f"unexpected /tools/lookup answer: {matches!r}")
        for match in matches:
            if match.get("Type") == "Study":
                return str(match["ID"])
        return None

    def series(self, study_uid: str) -> list[dict[str, Any]]:
        """The series of a study (Orthanc's expanded series resources); [] if unknown."""
        study = self.study_id(study_uid)
        if study is None:
            return []
        answer = self.get(f"/studies/{study}/series")
        return list(answer)

    def instances(self, study_uid: str) -> list[dict[str, Any]]:
        """All instances of a study; [] if unknown."""
        study = self.study_id(study_uid)
        if study is None:
            return []
        return list(self.get(f"/studies/{study}/instances"))

    def instance_tags(self, instance_id: str) -> dict[str, Any]:
        """Simplified tags of one instance (keyword -> value)."""
        return dict(self.get(f"/instances/{instance_id}/simplified-tags"))

    def instance_file(self, instance_id: str) -> bytes:
        """The stored DICOM file of an instance."""
        return self._request("GET", f"/instances/{instance_id}/file")

    def studies(self) -> list[str]:
        """Orthanc ids of all studies."""
        return [str(s) for s in self.get("/studies")]

    def send_study(self, study_uid: str, modality: str) -> dict[str, Any]:
        """Tell Orthanc to C-STORE a whole study to a configured modality (synchronously)."""
        study = self.study_id(study_uid)
        if study is None:
            raise OrthancError(f"study {study_uid} is not in Orthanc")
        answer = self.post(f"/modalities/{modality}/store",
                           {"Resources": [study], "Synchronous": True})
        return dict(answer)

    def statistics(self) -> dict[str, Any]:
        """Counts of patients, studies, series, instances."""
        return dict(self.get("/statistics"))


@contextmanager
def running_orthanc(workdir: Path, *, modalities: Mapping[str, Modality] | None = None,
                    dicomweb: bool = False, lua_scripts: Sequence[Path] = (),
                    stable_age_seconds: int = 3600) -> Iterator[Orthanc]:
    """Start an Orthanc in ``workdir``; always stop it afterwards."""
    if not os.access(ORTHANC_BINARY, os.X_OK):
        raise OrthancError(f"{ORTHANC_BINARY} is missing: apt-get install orthanc")
    orthanc = Orthanc(workdir=workdir, modalities=dict(modalities or {}), dicomweb=dicomweb,
                      lua_scripts=tuple(lua_scripts), stable_age_seconds=stable_age_seconds)
    orthanc.start()
    try:
        yield orthanc
    finally:
        orthanc.stop()


def series_by_modality(series: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Group Orthanc series resources by their Modality tag."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for item in series:
        grouped.setdefault(str(item["MainDicomTags"].get("Modality", "")), []).append(item)
    return grouped
