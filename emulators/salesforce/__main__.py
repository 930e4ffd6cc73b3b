"""Run the Salesforce emulator standalone: `python -m emulators.salesforce [--port N] [--cert-dir DIR]`."""
from __future__ import annotations

import argparse
import threading

from .org import EmulatedOrg
from .runner import start_salesforce_emulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--cert-dir", help="where to write the throwaway CA's PEM (default: a temp dir)")
    parser.add_argument("--licenses", type=int, default=10, help="size of the Salesforce licence pool")
    parser.add_argument("--token", default="emulator-dev-token", help="the dev session token to accept")
    args = parser.parse_args()
    org = EmulatedOrg(licenses={"Salesforce": args.licenses, "Chatter Free": 5000}, dev_token=args.token)
    handle = start_salesforce_emulator(org, port=args.port, cert_dir=args.cert_dir)
    print(f"Salesforce emulator at {handle.instance_url}")
    print(f"  CA certificate: {handle.ca_path}")
    print("  session token:  the --token value (Authorization: Bearer <token>)")
    print("Ctrl+C to stop.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        handle.stop()


if __name__ == "__main__":
    main()
