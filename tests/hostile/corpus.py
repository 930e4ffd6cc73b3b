"""Load the hostile-input corpus (tests/corpus/<category>/*.json): one case per file, each holding the
input and the expected outcome. Strings may name placeholders (`{user}`, `{clientState}`, ...) that a
test fills from its stack, and `{"$repeat": [text, times]}` stands for a long string anywhere."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any, Mapping

import pytest

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
_PLACEHOLDER = re.compile(r"\{([A-Za-z]+)\}")


def cases(category: str) -> list[Any]:
    """One pytest param per file of the category, its id the file name."""
    files = sorted((CORPUS / category).glob("*.json"))
    assert files, f"no corpus files in {CORPUS / category}"
    return [pytest.param(json.loads(f.read_text(encoding="utf-8")), id=f.stem) for f in files]


def fill(value: Any, names: Mapping[str, str]) -> Any:
    """The case data with `$repeat` expanded and known placeholders replaced (unknown braces stay)."""
    if isinstance(value, dict):
        if set(value) == {"$repeat"}:
            text, times = value["$repeat"]
            return fill(text, names) * times
        return {key: fill(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, names) for item in value]
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: names.get(m.group(1), m.group(0)), value)
    return value


def body_bytes(spec: Mapping[str, Any] | None) -> bytes:
    """A request or message body: {"json": value} (serialised), {"text": "..."} (UTF-8) or
    {"base64": "..."} (bytes that need not be UTF-8)."""
    if not spec:
        return b""
    if "json" in spec:
        return json.dumps(spec["json"], ensure_ascii=False).encode()
    if "text" in spec:
        return spec["text"].encode("utf-8", errors="surrogatepass")
    if "base64" in spec:
        return base64.b64decode(spec["base64"])
    raise ValueError(f"a body needs json, text or base64: {sorted(spec)}")
