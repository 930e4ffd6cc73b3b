#!/usr/bin/env bash
# Set up (idempotent) and run the local demo: emulated Entra tenant, Salesforce org and Service Bus,
# driven through the real function handlers. Extra arguments go to `python -m cli demo`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec .venv/bin/python -m cli demo "$@"
