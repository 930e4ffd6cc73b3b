"""What every emulated sObject shares: record ids and the refusal of a write."""
from __future__ import annotations

_ID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


class RecordError(Exception):
    """A write Salesforce would refuse: one errorCode, its message and the fields concerned."""

    def __init__(self, code: str, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = list(fields)


def salesforce_id(prefix: str, pod: str, number: int) -> str:
    """An 18-character id: 3-char key prefix, 3-char pod, 9-digit counter, then the case-safe suffix."""
    base = f"{prefix}{pod}{number:09d}"
    suffix = ""
    for chunk in (base[0:5], base[5:10], base[10:15]):
        bits = sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")
        suffix += _ID_SUFFIX[bits]
    return base + suffix
