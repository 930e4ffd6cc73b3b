"""json.loads for bodies that come from outside (webhook posts, queue messages, dead letters): every way
a body can fail to be JSON raises ValueError. Plain json.loads raises RecursionError, which is not a
ValueError, for an array or object nested a few thousand deep; a 4 KB message or a 20 KB post can do it."""
from __future__ import annotations

import json
from typing import Any


def parse_untrusted_json(raw: bytes | str) -> Any:
    """The parsed value; ValueError (UnicodeDecodeError and JSONDecodeError are ValueErrors) otherwise."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
