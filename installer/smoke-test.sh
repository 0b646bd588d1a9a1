#!/usr/bin/env bash
# Smoke test of a built Lineside edition, as a user would meet it.
#
#   installer/smoke-test.sh station|workstation
#
# Unpacks installer/out/lineside-EDITION_*.deb into a scratch root (dpkg -x; nothing is
# installed on this machine), or uses installer/out/dist/lineside-EDITION when there is
# no .deb or SMOKE_FROM=folder. Then, all with the frozen executable and offscreen Qt:
#   1. the package layout (executable, /usr/bin link, menu entry, icon);
#   2. `lineside --help` (the station must not offer `train`, the workstation must);
#   3. the desktop app starts and is still running after $SMOKE_GUI_SECONDS (default 10);
#   4. a project is created and generated part images are imported;
#   5. workstation: `train --epochs 1`, then inspect with the new model;
#      station: inspect with the model the workstation smoke test exported
#      (installer/out/workstation-model.onnx) or, without it, a fixture ONNX model.
# Generating the images and the fixture model uses the build Python (PYTHON) and the
# repository; everything under test is the frozen app. Any failure stops with a message.
set -euo pipefail

source "$(dirname "$0")/common.sh"
gui_seconds=${SMOKE_GUI_SECONDS:-10}
cd "$repo"

fail() { echo "SMOKE TEST FAILED ($edition): $*" >&2; exit 1; }
step() { echo; echo "== $*"; }

scratch=$(mktemp -d)
gui_pid=""
cleanup() {
  if [ -n "$gui_pid" ] && kill -0 "$gui_pid" 2>/dev/null; then kill "$gui_pid" 2>/dev/null || true; fi
  rm -rf "$scratch"
}
trap cleanup EXIT

step "locating the $edition build"
deb=""
if [ "${SMOKE_FROM:-deb}" = deb ]; then  # SMOKE_FROM=folder tests the frozen folder instead
  deb=$(ls "$out"/lineside-"$edition"_*.deb 2>/dev/null | tail -n 1 || true)
fi
if [ -n "$deb" ]; then
  echo "unpacking $(basename "$deb") into a scratch root"
  dpkg-deb --field "$deb" Package Version Depends | sed 's/^/  /'
  dpkg -x "$deb" "$scratch/root"
  app="$scratch/root/opt/lineside/lineside"
  [ "$(readlink "$scratch/root/usr/bin/lineside")" = /opt/lineside/lineside ] || fail "/usr/bin/lineside does not point at /opt/lineside/lineside"
  [ -f "$scratch/root/usr/share/applications/lineside.desktop" ] || fail "menu entry missing"
  [ -f "$scratch/root/usr/share/icons/hicolor/256x256/apps/lineside.png" ] || fail "icon missing"
  grep -q '^Exec=/usr/bin/lineside' "$scratch/root/usr/share/applications/lineside.desktop" || fail "menu entry does not start lineside"
else
  app="$out/dist/lineside-$edition/lineside"
  echo "no .deb in $out; using the frozen folder"
fi
[ -x "$app" ] || fail "$app not found: run installer/build.sh $edition first"
echo "app: $app"

step "no GTK in the bundle"
# Qt's GTK 3 theme plugin would bring libgtk-3 and its stack from the build PC
# (installer/hooks/hook-PySide6.QtGui.py keeps it out).
gtk=$(find "$(dirname "$app")" \( -name 'libgtk*' -o -name 'libgdk-3*' -o -name 'libgdk-x11*' -o -name '*qgtk3*' \) -print)
[ -z "$gtk" ] || fail "GTK libraries were bundled: $gtk"
echo "none"

export LINESIDE_HOME="$scratch/home" QT_QPA_PLATFORM=offscreen
work="$scratch/work"
mkdir -p "$work"

step "lineside --help"
"$app" --help > "$work/help.txt" || fail "--help exited with $?"
commands=$(sed -n '/positional arguments/,/options:/p' "$work/help.txt")
echo "$commands" | grep -q ' inspect ' || fail "--help does not list inspect"
if [ "$edition" = station ]; then
  echo "$commands" | grep -q ' train ' && fail "the station lists train"
else
  echo "$commands" | grep -q ' train ' || fail "the workstation does not list train"
fi
echo "$commands" | sed -n 's/^    \([a-z-]*\) .*/\1/p' | tr '\n' ' '; echo

step "desktop app, offscreen, for $gui_seconds s"
"$app" > "$work/gui.log" 2>&1 &
gui_pid=$!
sleep "$gui_seconds"
kill -0 "$gui_pid" 2>/dev/null || { cat "$work/gui.log"; fail "the desktop app exited within $gui_seconds s"; }
kill -TERM "$gui_pid"
wait "$gui_pid" 2>/dev/null || true
gui_pid=""
grep -h "app started" "$LINESIDE_HOME"/logs/lineside.log || fail "the desktop app logged no start (see $LINESIDE_HOME/logs)"
echo "alive after $gui_seconds s, closed"

step "project with generated part images"
"$PYTHON" - "$work/images" "$work/parts" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, ".")
from app.core.synthetic import write_demo_dataset
print("training images:", write_demo_dataset(Path(sys.argv[1]), n_ok=24, n_per_defect=8, seed=1))
print("parts to inspect:", write_demo_dataset(Path(sys.argv[2]), n_ok=4, n_per_defect=2, seed=2))
EOF
rm -rf "$work/parts/masks"  # the parts to inspect are the images, not their masks
project="$work/project"
"$app" new "$project" || fail "new exited with $?"
"$app" import "$project" "$work/images" || fail "import exited with $?"

if [ "$edition" = workstation ]; then
  step "train --epochs 1 (the trainer runs inside the frozen app)"
  start=$(date +%s)
  code=0
  "$app" train "$project" --epochs 1 --progress json > "$work/train.jsonl" || code=$?
  if [ "$code" -ne 0 ]; then
    tail -n 5 "$work/train.jsonl"; tail -n 20 "$LINESIDE_HOME"/logs/lineside-trainer.log 2>/dev/null || true
    fail "train exited with $code"
  fi
  grep -E '"event": ?"(start|done)"' "$work/train.jsonl" || fail "the trainer reported no start/done"
  version=$("$PYTHON" -c 'import json,sys; print([e for e in map(json.loads, open(sys.argv[1])) if e.get("event")=="done"][-1]["version"])' "$work/train.jsonl")
  echo "trained $version in $(( $(date +%s) - start )) s"
  cp "$project/models/$version/model.onnx" "$out/workstation-model.onnx"
  model_args=(--model "$version")
else
  step "a model for the station"
  model="$out/workstation-model.onnx"
  "$PYTHON" - "$project" "$model" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, ".")
from app.core.project import Project
project_dir, exported = Path(sys.argv[1]), Path(sys.argv[2])
with Project.open(project_dir) as project:
    folder = project_dir / "models" / "v1"
    folder.mkdir(parents=True, exist_ok=True)
    if exported.is_file():
        import shutil
        shutil.copyfile(exported, folder / "model.onnx")
        print("using the model exported by the workstation smoke test")
    else:
        from tests.onnx_fixtures import write_model
        write_model(folder / "model.onnx", class_names=("ok", "chip", "scratch", "spot"), version="v1")
        print("using a fixture ONNX model (run the workstation smoke test first for a trained one)")
    project.register_model("v1", folder, threshold=0.5, metrics={}, report={})
    project.deploy("v1")
EOF
  model_args=()
fi

step "inspect generated parts with the frozen command line"
"$app" inspect "$project" "$work/parts" "${model_args[@]}" > "$work/inspect.txt" || { cat "$work/inspect.txt"; fail "inspect exited with $?"; }
cat "$work/inspect.txt"
n_parts=$(find "$work/parts" -name '*.png' | wc -l)
n_verdicts=$(grep -c -E 'PASS|FAIL' "$work/inspect.txt" || true)
[ "$n_verdicts" -eq "$n_parts" ] || fail "$n_verdicts verdicts for $n_parts parts"

step "SMOKE TEST PASSED ($edition): $n_verdicts parts inspected"
