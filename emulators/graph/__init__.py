"""A local Microsoft Graph v1.0 emulator (users/delta, users, app role assignments, groups, sendMail)
for tests and the demo. Not deployed."""
from .faults import FaultPlan, FaultRule
from .mail import SentMail
from .server import DEFAULT_TOKEN, GraphEmulator, RecordedRequest, run_graph_emulator
from .tenant import DEFAULT_ACCESS_ROLE_ID, Tenant, UserChangeRecord

__all__ = [
    "DEFAULT_ACCESS_ROLE_ID",
    "DEFAULT_TOKEN",
    "FaultPlan",
    "FaultRule",
    "GraphEmulator",
    "RecordedRequest",
    "SentMail",
    "Tenant",
    "UserChangeRecord",
    "run_graph_emulator",
]
