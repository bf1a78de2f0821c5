#!/usr/bin/env bash
# Show a study (source series + MarrowMap outputs) in OHIF v3 served by Orthanc, and
# screenshot it in headless Chromium. See tools/viewer_check/README.md.
#
# usage: tools/viewer_check/run.sh [--out DIR] [--study UID] [--report FILE] [--serve] FOLDER...
#   FOLDER     folders (searched recursively) with the DICOM files to show, e.g. the source study
#              and MarrowMap's output folder; non-DICOM files (result.json, NIfTI maps) are skipped
#   --out      where the ohif_*.png screenshots go (default: docs/images of this repository)
#   --study    StudyInstanceUID to open when STUDY_DIR holds more than one study
#   --report   also write what OHIF showed (overlay texts, panels, problems) as JSON to FILE
#   --serve    take no screenshots: keep Orthanc+OHIF running until Ctrl-C (prints the URLs)
# Exit status: 0 when every object showed, 1 when OHIF did not show something (see the report), 2 on setup errors.
#
# Environment (all optional):
#   MARROWMAP_VIEWER_CACHE  cache folder for the OHIF dist and playwright-core (default ~/.cache/marrowmap-viewer)
#   CHROMIUM                Chromium binary (default /usr/bin/chromium); never downloaded
#   ORTHANC                 Orthanc binary (default /usr/sbin/Orthanc)
#   PYTHON                  Python with pydicom and numpy (default python3)
#   ORTHANC_PLUGINS         folder with libOrthancDicomWeb.so and libServeFolders.so (default /usr/share/orthanc/plugins)
set -euo pipefail

OHIF_VERSION="3.13.2"
PLAYWRIGHT_VERSION="1.65.1"
OHIF_PREFIX="/ohif"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${MARROWMAP_VIEWER_CACHE:-$HOME/.cache/marrowmap-viewer}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
PYTHON="${PYTHON:-python3}"
ORTHANC="${ORTHANC:-/usr/sbin/Orthanc}"
ORTHANC_PLUGINS="${ORTHANC_PLUGINS:-/usr/share/orthanc/plugins}"

die() { echo "viewer_check: $*" >&2; exit 2; }
log() { echo "viewer_check: $*" >&2; }

STUDY_UID=""
REPORT=""
OUT_DIR=""
SERVE=0
POSITIONAL=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --study) STUDY_UID="${2:?--study needs a UID}"; shift 2 ;;
    --out) OUT_DIR="${2:?--out needs a folder}"; shift 2 ;;
    --report) REPORT="${2:?--report needs a file}"; shift 2 ;;
    --serve) SERVE=1; shift ;;
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) POSITIONAL+=("$1"); shift ;;
  esac
done
[[ ${#POSITIONAL[@]} -ge 1 ]] || die "usage: run.sh [--out DIR] [--study UID] [--report FILE] [--serve] FOLDER..."
FOLDERS=()
for folder in "${POSITIONAL[@]}"; do
  [[ -d "$folder" ]] || die "no such folder $folder"
  FOLDERS+=("$(cd "$folder" && pwd)")
done
OUT_DIR="${OUT_DIR:-$REPO/docs/images}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"

for tool in npm node curl "$PYTHON" "$CHROMIUM" "$ORTHANC"; do
  command -v "$tool" >/dev/null || die "missing $tool"
done
for plugin in libOrthancDicomWeb.so libServeFolders.so; do
  [[ -e "$ORTHANC_PLUGINS/$plugin" ]] || die "missing Orthanc plugin $ORTHANC_PLUGINS/$plugin (Debian orthanc-dicomweb / orthanc)"
done

# --- 1. OHIF prebuilt dist (npm package @ohif/app) and playwright-core, cached outside the repo ---
OHIF_DIST="$CACHE/ohif-app-$OHIF_VERSION/package/dist"
if [[ ! -f "$OHIF_DIST/index.html" ]]; then
  log "fetching @ohif/app@$OHIF_VERSION from the npm registry"
  mkdir -p "$CACHE/ohif-app-$OHIF_VERSION"
  (cd "$CACHE/ohif-app-$OHIF_VERSION" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null \
     && tar xzf "ohif-app-$OHIF_VERSION.tgz" && rm "ohif-app-$OHIF_VERSION.tgz")
  [[ -f "$OHIF_DIST/index.html" ]] || die "@ohif/app@$OHIF_VERSION has no dist/index.html"
fi
PW_DIR="$CACHE/playwright-core-$PLAYWRIGHT_VERSION"
if [[ ! -f "$PW_DIR/node_modules/playwright-core/package.json" ]]; then
  log "installing playwright-core@$PLAYWRIGHT_VERSION (no browser download)"
  mkdir -p "$PW_DIR"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund --prefix "$PW_DIR" \
    "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null
fi

# --- 2. scratch folder: served OHIF copy, Orthanc config and storage ---
WORK="$(mktemp -d -t marrowmap-viewer-check.XXXXXX)"
ORTHANC_PID=""
cleanup() {
  if [[ -n "$ORTHANC_PID" ]] && kill -0 "$ORTHANC_PID" 2>/dev/null; then
    kill "$ORTHANC_PID"
    wait "$ORTHANC_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# OHIF's dist is built for "/" (index.html links and webpack's publicPath); serve a copy rebased on $OHIF_PREFIX.
SERVED="$WORK/ohif"
cp -a "$OHIF_DIST" "$SERVED"
"$PYTHON" "$HERE/rebase_ohif.py" "$SERVED" "$OHIF_PREFIX/"
sed "s#@OHIF_PREFIX@#$OHIF_PREFIX#g" "$HERE/app-config.js.template" > "$SERVED/app-config.js"

read -r HTTP_PORT DICOM_PORT < <("$PYTHON" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks:
    s.close()')
mkdir -p "$WORK/storage"
sed -e "s#@STORAGE_DIR@#$WORK/storage#g" -e "s#@HTTP_PORT@#$HTTP_PORT#g" -e "s#@DICOM_PORT@#$DICOM_PORT#g" \
    -e "s#@PLUGIN_DIR@#$ORTHANC_PLUGINS#g" -e "s#@OHIF_PREFIX@#$OHIF_PREFIX#g" -e "s#@OHIF_DIR@#$SERVED#g" \
    "$HERE/orthanc.json.template" > "$WORK/orthanc.json"

# --- 3. Orthanc on loopback ---
BASE="http://127.0.0.1:$HTTP_PORT"
"$ORTHANC" "$WORK/orthanc.json" >"$WORK/orthanc.log" 2>&1 &
ORTHANC_PID=$!
for _ in $(seq 1 60); do
  curl -sf "$BASE/system" >/dev/null 2>&1 && break
  kill -0 "$ORTHANC_PID" 2>/dev/null || { cat "$WORK/orthanc.log" >&2; die "Orthanc exited"; }
  sleep 0.5
done
curl -sf "$BASE/system" >/dev/null || { cat "$WORK/orthanc.log" >&2; die "Orthanc did not answer on $BASE"; }
log "Orthanc $BASE (pid $ORTHANC_PID), OHIF at $BASE$OHIF_PREFIX/"

# --- 4. upload every DICOM file of the folders ---
stored=0; skipped=0
while IFS= read -r -d '' f; do
  code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/dicom' \
          --data-binary "@$f" "$BASE/instances")"
  if [[ "$code" == 200 ]]; then stored=$((stored + 1)); else skipped=$((skipped + 1)); fi
done < <(find "${FOLDERS[@]}" -type f -print0 | sort -z)
log "stored $stored DICOM instances ($skipped other files skipped)"
[[ $stored -gt 0 ]] || die "no DICOM file in ${FOLDERS[*]}"

# what to open: SR, SEG (and its source series), SC overlays (best slice) and summary, read from the files
"$PYTHON" "$HERE/inventory.py" ${STUDY_UID:+--study "$STUDY_UID"} "${FOLDERS[@]}" > "$WORK/inventory.json" \
  || die "cannot list the study in ${FOLDERS[*]}"
STUDY_UID="$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["study_uid"])' "$WORK/inventory.json")"

if [[ $SERVE -eq 1 ]]; then
  echo "$BASE $OHIF_PREFIX $STUDY_UID"
  log "serving $BASE$OHIF_PREFIX/ (study $STUDY_UID); Ctrl-C to stop"
  wait "$ORTHANC_PID"
  exit 0
fi

# --- 5. screenshots ---
status=0
node "$HERE/shoot.mjs" \
  --base "$BASE" --prefix "$OHIF_PREFIX" --inventory "$WORK/inventory.json" --out "$OUT_DIR" \
  --report "$WORK/report.json" --chromium "$CHROMIUM" --playwright "$PW_DIR/node_modules/playwright-core" || status=$?
[[ -f "$WORK/report.json" ]] || die "shoot.mjs wrote no report (exit $status)"
[[ -z "$REPORT" ]] || cp "$WORK/report.json" "$REPORT"
cat "$WORK/report.json"
exit "$status"

