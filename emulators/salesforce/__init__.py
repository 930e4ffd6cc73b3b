"""A local Salesforce for tests and the demo: an in-memory org (`EmulatedOrg`) served over TLS by
aiohttp (`run_salesforce_emulator`), speaking the REST subset that User provisioning uses."""
from .org import EmulatedOrg, RecordError, UsernameRegistry
from .runner import EmulatorHandle, run_salesforce_emulator, start_salesforce_emulator

__all__ = [
    "EmulatedOrg",
    "EmulatorHandle",
    "RecordError",
    "UsernameRegistry",
    "run_salesforce_emulator",
    "start_salesforce_emulator",
]
