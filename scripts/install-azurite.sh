#!/usr/bin/env bash
# Install the Azurite storage emulator (tests of the Table state store start it themselves) into
# ./.tools/azurite. Idempotent and quiet. 3.35.0 is the newest release that runs on Node 20.
set -euo pipefail

AZURITE_VERSION=3.35.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$root/.tools/azurite"
bin="$prefix/node_modules/.bin/azurite-table"
manifest="$prefix/node_modules/azurite/package.json"

if [[ -x "$bin" && -f "$manifest" ]] && grep -q "\"version\": \"$AZURITE_VERSION\"" "$manifest"; then
  exit 0
fi

command -v npm >/dev/null || { echo "install-azurite.sh: npm not found; install Node.js 20+" >&2; exit 1; }
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error --silent \
  "azurite@$AZURITE_VERSION" >/dev/null
[[ -x "$bin" ]] || { echo "install-azurite.sh: $bin missing after install" >&2; exit 1; }
