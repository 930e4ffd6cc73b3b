"""A stand-in for `az rest` against Microsoft Graph's service principal endpoints, for testing
scripts/grant-graph-permissions.sh where neither the Azure CLI nor a tenant is reachable. It keeps a
tenant's state in the JSON file named by FAKE_GRAPH_STATE, answers as Graph does, and applies --query
with jmespath and -o tsv/json/none as the CLI does (the CLI uses the same jmespath library).
Every request is appended to the state's "requests" for the test to inspect."""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import jmespath

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="az")
    parser.add_argument("command", choices=["rest"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--method", default="get")
    parser.add_argument("--query")
    parser.add_argument("-o", "--output", default="json")
    parser.add_argument("--headers")
    parser.add_argument("--body")
    parser.add_argument("--only-show-errors", action="store_true")
    args = parser.parse_args(argv)

    state_path = Path(os.environ["FAKE_GRAPH_STATE"])
    state = json.loads(state_path.read_text())
    state["requests"].append({"method": args.method.upper(), "url": args.url, "body": args.body})
    try:
        result = respond(state, args.method.upper(), args.url, args.body)
    except GraphError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        state_path.write_text(json.dumps(state))
    if args.query:
        result = jmespath.search(args.query, result)
    write(result, args.output)
    return 0


class GraphError(Exception):
    pass


def respond(state: dict[str, Any], method: str, url: str, body: str | None) -> Any:
    base = state["graph_url"] + "/v1.0/"
    if not url.startswith(base):
        raise GraphError(f"Not Found: {url}")
    path = url[len(base):]
    graph = state["graph_service_principal"]
    if method == "GET" and path == f"servicePrincipals(appId='{GRAPH_APP_ID}')":
        return graph
    if method == "GET" and path == f"servicePrincipals/{graph['id']}":
        return graph
    match = re.fullmatch(r"servicePrincipals/([0-9a-f-]{36})/appRoleAssignments", path)
    if match is None or match.group(1) not in state["assignments"]:
        raise GraphError(f"Request_ResourceNotFound: {path}")
    assignments = state["assignments"][match.group(1)]
    if method == "GET":
        return {"value": assignments}
    if method == "POST":
        request = json.loads(body or "")
        if request["principalId"] != match.group(1) or request["resourceId"] != graph["id"]:
            raise GraphError("Bad Request: principalId and resourceId must name the assignee and Graph")
        if request["appRoleId"] not in {r["id"] for r in graph["appRoles"] if "Application" in r["allowedMemberTypes"]}:
            raise GraphError("Bad Request: not an application permission of this resource")
        if any(a["appRoleId"] == request["appRoleId"] for a in assignments):
            raise GraphError("Bad Request: Permission being assigned already exists on the object")
        assignments.append({**request, "id": f"assignment-{len(assignments)}"})
        return request
    raise GraphError(f"Method not allowed: {method}")


def write(result: Any, output: str) -> None:
    if output == "none" or result is None:
        return
    if output == "json":
        print(json.dumps(result, indent=2))
        return
    rows = result if isinstance(result, list) else [result]
    for row in rows:
        print("\t".join(str(v) for v in row) if isinstance(row, list) else str(row))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
