"""The real-world MR corpus of issue 13: cases (a folder of real DICOM files each) and their outcomes.

Sources: the real MR files shipped inside the installed pydicom and pydicom-data packages, and
the corpus extracted by ``tools/realworld/collect.py`` (``MARROWMAP_REALWORLD_DIR``, default
``../shared/realworld`` beside the repository; see tests/data/realworld/sources.toml).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

REPO = Path(__file__).resolve().parents[1]
CORPUS_ENV = "MARROWMAP_REALWORLD_DIR"
MR = "MR"


@dataclass(frozen=True)
class Case:
    """One folder of real files: a series (often partial) or a few series of one study."""

    source: str
    name: str
    files: tuple[Path, ...]

    def copy_to(self, folder: Path) -> Path:
        """The case's files in a fresh study folder of their own."""
        folder.mkdir(parents=True, exist_ok=True)
        for n, path in enumerate(self.files):
            shutil.copyfile(path, folder / f"{n:04d}_{path.name}")
        return folder


def corpus_dir() -> Path | None:
    """The extracted corpus, when present."""
    configured = os.environ.get(CORPUS_ENV)
    path = Path(configured) if configured else REPO.parent / "shared" / "realworld"
    return path if (path / "SOURCES.md").is_file() else None


def mr_series(path: Path) -> str | None:
    """The SeriesInstanceUID of an MR file, else None."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["Modality", "SeriesInstanceUID"])
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None
    return str(ds.get("SeriesInstanceUID", "")) if ds.get("Modality") == MR else None


def package_cases() -> list[Case]:
    """Each real MR file shipped in pydicom's test files and in pydicom-data, one case per file."""
    import data_store
    import pydicom

    roots = {"pydicom": Path(pydicom.__file__).parent / "data" / "test_files",
             "pydicom-data": Path(data_store.__file__).parent / "data"}
    cases = []
    for source, root in roots.items():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if mr_series(path) is not None:
                cases.append(Case(source, str(path.relative_to(root)), (path,)))
    return cases


def corpus_cases(root: Path) -> list[Case]:
    """Each folder of the extracted corpus with MR files, one case per folder."""
    cases = []
    for source_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        folders: dict[Path, list[Path]] = {}
        for path in sorted(p for p in source_dir.rglob("*") if p.is_file() and p.name != "LICENSE"):
            folders.setdefault(path.parent, []).append(path)
        for folder, files in folders.items():
            mr = [f for f in files if mr_series(f) is not None]
            if mr:
                cases.append(Case(source_dir.name, str(folder.relative_to(source_dir)), tuple(mr)))
    return cases


def series_count(cases: list[Case]) -> int:
    """Distinct MR series (by SeriesInstanceUID) over the cases' files."""
    return len({uid for c in cases for f in c.files if (uid := mr_series(f))})


def tally(outcomes: dict[str, tuple[str, str]]) -> Counter[str]:
    """Outcome -> count, from case -> (outcome, reason)."""
    return Counter(outcome for outcome, _ in outcomes.values())
