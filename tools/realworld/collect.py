"""Extract the real-world MR corpus listed in tests/data/realworld/sources.toml from local git
snapshots of the source repositories (no network), with each repository's LICENSE.

    python tools/realworld/collect.py --out ../shared/realworld --snapshots /work/.mirror

``--snapshots`` holds one bare git directory per repository at ``<owner>+<name>/repo`` (the
layout the search tool's ``fetch`` leaves). Files are read at the pinned commit with
``git show``; the output has ``<source>/<folder>/<file>``, ``<source>/LICENSE`` and ``SOURCES.md``.
"""

from __future__ import annotations

import argparse
import fnmatch
import subprocess
import tomllib
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Any

SOURCES = Path(__file__).resolve().parents[2] / "tests" / "data" / "realworld" / "sources.toml"


def _git(git_dir: Path, *args: str) -> bytes:
    return subprocess.run(["git", "--git-dir", str(git_dir), *args], check=True, capture_output=True).stdout


def _blobs(git_dir: Path, commit: str) -> list[tuple[str, int]]:
    """(path, size) of every file at ``commit``."""
    out = []
    for line in _git(git_dir, "ls-tree", "-r", "-l", commit).decode().splitlines():
        meta, path = line.split("\t", 1)
        size = meta.split()[3]
        if size.isdigit():  # "-": a submodule; other: a blob the snapshot lacks (>= 4 MiB)
            out.append((path, int(size)))
    return out


def _cases(blobs: list[tuple[str, int]], source: dict[str, Any], defaults: dict[str, Any]) -> dict[str, list[str]]:
    """Folder -> the files kept from it."""
    skip = tuple(defaults["skip_suffixes"])
    max_files = int(source.get("max_files", defaults["max_files"]))
    max_bytes = int(source.get("max_file_kb", defaults["max_file_kb"])) * 1024
    by_folder: dict[str, list[str]] = defaultdict(list)
    for path, size in blobs:
        folder = str(PurePosixPath(path).parent)
        if path.lower().endswith(skip) or size == 0 or size > max_bytes:
            continue
        if any(fnmatch.fnmatch(folder, p) for p in source["folders"]) and not any(
                fnmatch.fnmatch(folder, p) for p in source.get("exclude", [])):
            by_folder[folder].append(path)
    return {folder: sorted(files)[:max_files] for folder, files in sorted(by_folder.items())}


def collect(out: Path, snapshots: Path) -> int:
    """Write the corpus under ``out``; return the number of cases (folders)."""
    config = tomllib.loads(SOURCES.read_text())
    lines = ["# Real-world MR corpus", "", "Extracted by tools/realworld/collect.py from the commits below; "
             "at most the first files of each folder (partial series).", "",
             "| source | repository @ commit | licence | cases | files |", "| --- | --- | --- | --- | --- |"]
    total = 0
    for source in config["source"]:
        git_dir = snapshots / source["repository"].replace("/", "+") / "repo"
        cases = _cases(_blobs(git_dir, source["commit"]), source, config)
        target = out / source["name"]
        for files in cases.values():
            for path in files:
                dest = target / path
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(_git(git_dir, "show", f"{source['commit']}:{path}"))
        (target / "LICENSE").write_bytes(_git(git_dir, "show", f"{source['commit']}:LICENSE"))
        files_n = sum(len(f) for f in cases.values())
        lines.append(f"| {source['name']} | {source['repository']} @ {source['commit'][:12]} | {source['licence']} "
                     f"| {len(cases)} | {files_n} |")
        total += len(cases)
    (out / "SOURCES.md").write_text("\n".join(lines) + "\n")
    return total


def main() -> None:
    """Command line: --out DIR --snapshots DIR."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--snapshots", type=Path, default=Path("/work/.mirror"))
    args = parser.parse_args()
    print(f"{collect(args.out, args.snapshots)} cases written to {args.out}")


if __name__ == "__main__":
    main()
