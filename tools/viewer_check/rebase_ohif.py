"""Rebase a copy of OHIF's prebuilt ``dist/`` from "/" onto a sub-path such as "/ohif/".

The npm package ``@ohif/app`` is built with PUBLIC_URL "/": index.html links its
scripts and styles as "/app.bundle...js", webpack's runtime loads chunks, workers and
wasm from ``__webpack_require__.p = "/"``, and the stylesheet loads its font from
"url(/...woff2)". Orthanc's ServeFolders plugin can only serve the copy under a
sub-path (the root belongs to Orthanc's REST API), so those absolute references are
rewritten in place. Usage: ``python3 rebase_ohif.py SERVED_DIST_DIR /ohif/``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_PUBLIC_PATH = '__webpack_require__.p = "/";'
_INDEX_ATTR = re.compile(r'(href|src)="/(?!/)')
_INDEX_PUBLIC_URL = 'window.PUBLIC_URL="/"'
_CSS_URL = re.compile(r"url\(/(?!/)")


class RebaseError(RuntimeError):
    """The dist does not look like the OHIF build this script knows how to rebase."""


def rebase(dist: Path, prefix: str) -> int:
    """Rewrite the root-relative references of the OHIF dist in ``dist`` onto ``prefix``.

    ``prefix`` must start and end with "/". Returns the number of files changed.
    """
    if not (prefix.startswith("/") and prefix.endswith("/")):
        raise ValueError(f"prefix must start and end with '/': {prefix!r}")
    index = dist / "index.html"
    html = index.read_text(encoding="utf-8")
    if _INDEX_PUBLIC_URL not in html:
        raise RebaseError(f"{index} does not set {_INDEX_PUBLIC_URL}")
    html = html.replace(_INDEX_PUBLIC_URL, f'window.PUBLIC_URL="{prefix}"')
    index.write_text(_INDEX_ATTR.sub(lambda m: f'{m.group(1)}="{prefix}', html), encoding="utf-8")
    changed = 1
    for js in sorted(dist.glob("*.js")):
        text = js.read_text(encoding="utf-8")
        if _PUBLIC_PATH in text:
            js.write_text(text.replace(_PUBLIC_PATH, f'__webpack_require__.p = "{prefix}";'), encoding="utf-8")
            changed += 1
    for css in sorted(dist.glob("*.css")):
        text = css.read_text(encoding="utf-8")
        new = _CSS_URL.sub(f"url({prefix}", text)
        if new != text:
            css.write_text(new, encoding="utf-8")
            changed += 1
    manifest = dist / "manifest.json"
    if manifest.is_file():
        text = manifest.read_text(encoding="utf-8")
        manifest.write_text(text.replace('"/assets/', f'"{prefix}assets/'), encoding="utf-8")
    if changed == 1:
        raise RebaseError(f"no webpack publicPath found in {dist}/*.js")
    return changed


def main(argv: list[str]) -> int:
    """Command-line entry: ``rebase_ohif.py DIST PREFIX``."""
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    count = rebase(Path(argv[1]), argv[2])
    print(f"rebase_ohif: {count} files rebased onto {argv[2]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
