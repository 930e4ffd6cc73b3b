"""Read infra/ the way checkov does (pycep-parser) and answer the questions the infra tests ask: which
app settings the Function App gets, and with what kind of value."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycep import BicepParser

INFRA = Path(__file__).resolve().parents[2] / "infra"
FUNCTION_APP = INFRA / "app" / "function-app.bicep"


@functools.cache
def _parser() -> BicepParser:
    return BicepParser()  # builds its grammar once: most of the cost of a parse


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    return _parser().parse(file_path=path)


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def resource(path: Path, name: str) -> dict[str, Any]:
    """A resource's body (its `config`), by symbolic name."""
    return parse(path)["resources"][name]["config"]


@dataclass(frozen=True)
class SettingValue:
    """An app setting's value as written in the Bicep: a parameter, a literal or an interpolation."""

    raw: str
    parameter: str | None  # the module parameter it is set from, if any

    @property
    def is_key_vault_reference(self) -> bool:
        return self.raw.startswith("@Microsoft.KeyVault(SecretUri=") and self.raw.endswith(")")

    @property
    def literal(self) -> str | None:
        """The value itself, when the Bicep writes it out (not a parameter, interpolation or secret)."""
        if self.parameter is not None or "${" in self.raw or self.is_key_vault_reference:
            return None
        return self.raw


def app_settings_by_mode() -> dict[str, dict[str, SettingValue]]:
    """The app settings resource is `union(<object variables>..., <variable>[salesforceAuthMode])`:
    resolve it into the full set of settings for each value of the indexed variable's key."""
    module = parse(FUNCTION_APP)
    properties = resource(FUNCTION_APP, "settings")["properties"]["function"]
    assert properties["type"] == "union", "the app settings are expected as union(...)"
    common: dict[str, Any] = {}
    per_mode: dict[str, dict[str, Any]] | None = None
    for argument in properties["parameters"].values():
        if isinstance(argument, str):
            common.update(module["variables"][argument]["value"])
            continue
        operands = argument["operator"]["operands"]
        assert argument["operator"]["type"] == "index_accessor" and per_mode is None
        per_mode = module["variables"][operands["operand_1"]]["value"]
        allowed = _allowed_values(module["parameters"][operands["operand_2"]])
        assert set(per_mode) == set(allowed), f"{operands['operand_1']} must cover exactly {sorted(allowed)}"
    assert per_mode is not None, "expected the Salesforce credentials chosen by salesforceAuthMode"
    parameters = set(module["parameters"])
    return {
        mode: {name: SettingValue(raw, raw if raw in parameters else None) for name, raw in {**common, **extra}.items()}
        for mode, extra in per_mode.items()
    }


def _allowed_values(parameter: dict[str, Any]) -> list[str]:
    for decorator in parameter["decorators"]:
        if decorator["type"] == "allowed":
            return decorator["argument"]
    raise AssertionError("salesforceAuthMode should list its allowed values")
