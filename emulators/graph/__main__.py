"""Run the Graph emulator standalone: `python -m emulators.graph --demo-users 1200`."""
from __future__ import annotations

import argparse
import threading

from .demo_tenant import seed_demo_tenant
from .server import DEFAULT_TOKEN, GraphEmulator
from .tenant import Tenant


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators.graph", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the bearer token clients must present")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--demo-users", type=int, default=0, help="seed the demo tenant with this many users")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    tenant = Tenant(seed=args.seed)
    if args.demo_users:
        summary = seed_demo_tenant(tenant, users=args.demo_users, seed=args.seed)
        print(f"demo tenant: {summary.describe()}", flush=True)
    emulator = GraphEmulator(tenant, token=args.token, page_size=args.page_size)
    print(f"Graph emulator at {emulator.start(args.host, args.port)} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
