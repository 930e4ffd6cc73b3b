"""python -m benchmarks.convergence --users 10000 [--seed N] [--json]

Runs the scenario (see benchmarks/convergence/scenario.py), prints its figures and every problem found,
and exits 1 when the run did not converge. Figures depend on the machine; the verdict does not."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from .scenario import ScenarioResult, run_scenario


def print_table(result: ScenarioResult) -> None:
    figures = result.figures()
    rows: list[tuple[str, object]] = [
        ("users in the tenant", figures["users"]),
        ("in scope", figures["in_scope"]),
        ("converged", f"{figures['converged']} ({figures['converged_percent']} %)"),
        ("failed, dead-lettered and reported", figures["failed_and_reported"]),
        ("duplicates", figures["duplicates"]),
        ("lost", figures["lost"]),
        ("out of scope but active", figures["out_of_scope_but_active"]),
        ("deleted", figures["deleted"]),
        ("dead-lettered", sum(figures["dead_lettered"].values())),
    ]
    rows += [(f"  {code}", n) for code, n in figures["dead_lettered"].items()]
    rows += [
        ("dead-letter problems", figures["dead_letter_problems"]),
        ("failure digest emails", figures["emails"]),
        ("quarantine alerts", figures["quarantine_alerts"]),
        ("Salesforce calls", figures["salesforce_calls"]),
        ("Graph calls (in-process workers)", figures["graph_calls"]),
        ("Graph requests served (batch items too)", figures["graph_requests_served"]),
        ("faults injected", sum(figures["faults_injected"].values())),
    ]
    rows += [(f"  {kind}", n) for kind, n in figures["faults_injected"].items()]
    rows += [("tenant changes during the run", sum(figures["tenant_changes"].values()))]
    rows += [(f"  {kind.replace('_', ' ')}", n) for kind, n in figures["tenant_changes"].items()]
    rows += [
        ("function invocations", figures["function_invocations"]),
        ("duplicates dropped by Service Bus", figures["duplicates_dropped_by_service_bus"]),
        ("wall time", f"{figures['wall_seconds']} s"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.convergence", description=__doc__.split("\n\n")[1])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the figures (and problems) as JSON only")
    args = parser.parse_args()
    quiet = logging.StreamHandler()
    quiet.setLevel(logging.CRITICAL)  # faults are the point of the run: only the figures matter
    logging.basicConfig(level=logging.INFO, handlers=[quiet])
    result = asyncio.run(run_scenario(args.users, args.seed))
    problems = result.findings.problems()
    if args.json:
        print(json.dumps({**result.figures(), "problems": problems}, indent=2))
    else:
        print_table(result)
        for problem in problems:
            print(f"PROBLEM {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
