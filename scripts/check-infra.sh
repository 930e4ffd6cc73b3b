#!/usr/bin/env bash
# Static checks of the Bicep in infra/ with checkov (offline: --skip-download). Installs a pinned
# checkov into .tools/checkov-venv on first use (its own venv: its dependency pins clash with the app's).
# Findings are fixed in the Bicep or skipped there with an inline `#checkov:skip=CKV_...: reason`.
# checkov exits 0 when it cannot parse a file (and skips it), so this script fails on parsing errors.
set -euo pipefail

CHECKOV_VERSION=3.3.30
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/checkov-venv"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

if [[ "$("$venv/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]]; then
  echo "check-infra: installing checkov $CHECKOV_VERSION into .tools/checkov-venv (a few minutes the first time)"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile "checkov==$CHECKOV_VERSION"
fi

cd "$root"
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
status=0
"$venv/bin/checkov" --directory infra --framework bicep --skip-download --quiet --compact "$@" | tee "$report" \
  || status=$?
if grep -q "Parsing errors: [1-9]" "$report"; then
  echo "check-infra: checkov could not parse a Bicep file and did not check it" >&2
  exit 1
fi
exit "$status"
