# Shared set-up of build.sh and smoke-test.sh (sourced, not run): checks the edition
# argument and sets edition, here, repo, out and PYTHON.
edition=${1:-}
case "$edition" in
  station|workstation) ;;
  *) echo "usage: $0 station|workstation" >&2; exit 2;;
esac
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
out="$here/out"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHON
