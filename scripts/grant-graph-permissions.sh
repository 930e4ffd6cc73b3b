#!/usr/bin/env bash
# Grant the Function App's managed identity the Microsoft Graph application permissions it uses, as app
# role assignments on its service principal (what "admin consent" does for an app registration; a
# managed identity has no consent screen). Idempotent: roles already granted are skipped. Run it as
# an admin who may grant Graph application permissions (Privileged Role Administrator or Global
# Administrator), with the Azure CLI signed in to the tenant (az login --tenant <tenant>).
#
#   scripts/grant-graph-permissions.sh --principal-id <object id>   (or AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID)
#   scripts/grant-graph-permissions.sh --with-profile-import ...    also Application.ReadWrite.OwnedBy
#   scripts/grant-graph-permissions.sh --without-mail-send ...      Exchange RBAC for Applications grants it instead
#   scripts/grant-graph-permissions.sh --dry-run ...                say what would be granted
set -euo pipefail

# Microsoft Graph's application id: the same in every tenant and national cloud.
GRAPH_APP_ID=00000003-0000-0000-c000-000000000000
# users and users/delta; members of groups assigned to the Salesforce app; the app's roles and
# assignments; the failure digests (restrict Mail.Send to the sender mailbox: infra/README.md).
PERMISSIONS=(User.Read.All GroupMember.Read.All Application.Read.All Mail.Send)
# Importing Salesforce profiles as app roles writes the Salesforce app's appRoles: only on request.
PROFILE_IMPORT_PERMISSION=Application.ReadWrite.OwnedBy

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  echo
  echo "options: --principal-id ID  --graph-url URL (default https://graph.microsoft.com)  --with-profile-import"
  echo "         --without-mail-send  --dry-run"
}

principal_id="${AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID:-}"
graph_url=https://graph.microsoft.com
dry_run=false
while (($#)); do
  case "$1" in
    --principal-id) principal_id="${2:-}"; shift 2 ;;
    --graph-url) graph_url="${2%/}"; shift 2 ;;
    --with-profile-import) PERMISSIONS+=("$PROFILE_IMPORT_PERMISSION"); shift ;;
    # An Entra-granted Mail.Send reaches every mailbox; Exchange's own grant is scoped (infra/README.md).
    --without-mail-send) PERMISSIONS=("${PERMISSIONS[@]/Mail.Send}"); shift ;;
    --dry-run) dry_run=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "grant-graph-permissions: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

guid='^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
if [[ ! $principal_id =~ $guid ]]; then
  echo "grant-graph-permissions: give the managed identity's principal (object) id with --principal-id;" \
    "azd prints it as AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID (azd env get-values)" >&2
  exit 2
fi
command -v az >/dev/null || { echo "grant-graph-permissions: the Azure CLI (az) is required" >&2; exit 1; }

graph() { az rest --only-show-errors --url "$graph_url/v1.0/$1" "${@:2}"; }

graph_sp_id="$(graph "servicePrincipals(appId='$GRAPH_APP_ID')" --method get --query id -o tsv)"
# value<TAB>id of every application permission Graph offers
roles="$(graph "servicePrincipals/$graph_sp_id" --method get \
  --query "appRoles[?contains(allowedMemberTypes, 'Application')].[value, id]" -o tsv)"
held="$(graph "servicePrincipals/$principal_id/appRoleAssignments" --method get \
  --query "value[?resourceId=='$graph_sp_id'].appRoleId" -o tsv)"

role_id() { awk -F '\t' -v want="$1" '$1 == want { print $2 }' <<<"$roles"; }

for permission in "${PERMISSIONS[@]}"; do
  [[ -n $permission ]] || continue
  id="$(role_id "$permission")"
  [[ -n $id ]] || { echo "grant-graph-permissions: Graph offers no application permission $permission" >&2; exit 1; }
  if grep -qixF "$id" <<<"$held"; then
    echo "already granted: $permission"
  elif $dry_run; then
    echo "would grant: $permission"
  else
    graph "servicePrincipals/$principal_id/appRoleAssignments" --method post --output none \
      --headers Content-Type=application/json \
      --body "{\"principalId\": \"$principal_id\", \"resourceId\": \"$graph_sp_id\", \"appRoleId\": \"$id\"}"
    echo "granted: $permission"
  fi
done

# Say (never revoke) what the identity holds beyond this list, e.g. from an earlier profile import.
while IFS= read -r id; do
  [[ -n $id ]] || continue
  value="$(awk -F '\t' -v want="$id" 'tolower($2) == tolower(want) { print $1 }' <<<"$roles")"
  if [[ " ${PERMISSIONS[*]} " != *" ${value:-$id} "* ]]; then
    echo "note: the identity also holds ${value:-app role $id}, which this app does not need"
  fi
done <<<"$held"
