"""SelectUniqueValue against the org for one batch of users (see shared/core/unique_values).

The candidates each unlinked user would pick ride along in the batch's matching query (the users
holding them come back with the users matched), so a batch of creates normally costs no query of its
own; only a candidate that turns out taken costs one more query (`taken_values`) for the rest of that
user's candidates. Values seen taken are remembered for later batches of this worker, so they are
skipped without asking again.

    unique = UniqueValuePicker(org, mapping, taken_before)
    ask = unique.first_guesses(sources_of_unlinked_users)    # field → values, add to the matching query
    unique.learn(ask, found_users)
    picks = await unique.pick(sources_of_creates)             # per user: {field: value} or its error
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping, Sequence

from ..core.errors import ProvisioningError, TransientError
from ..core.mapping import AttributeMapping, MappingInput
from ..core.models import SalesforceUser
from ..core.ports import SalesforceOrg
from ..core.unique_values import Picks, UniqueValueLedger

log = logging.getLogger(__name__)

# A nickname clash on create when the nickname was picked as unique: someone took it since the query
# (another worker's batch, an admin). A retry asks again and picks the next candidate.
_CLASH_CODES = {"DUPLICATE_COMM_NICKNAME": "CommunityNickname"}


class TakenValues:
    """SelectUniqueValue values known to be taken in the org, per field, kept across batches. Only an
    optimisation (a value is asked about again once forgotten), so it forgets everything past a size."""

    def __init__(self, max_per_field: int = 200_000) -> None:
        self._max = max_per_field
        self._values: dict[str, set[str]] = {}

    def get(self, field: str, default: Iterable[str] = ()) -> Iterable[str]:
        return self._values.get(field, default)

    def add(self, values: Mapping[str, Iterable[Any]]) -> None:
        for field, new in values.items():
            known = self._values.setdefault(field, set())
            if len(known) > self._max:
                known.clear()
            known.update(str(v).casefold() for v in new if v not in (None, ""))


class UniqueValuePicker:
    def __init__(self, org: SalesforceOrg, mapping: AttributeMapping, taken_before: TakenValues) -> None:
        self._org = org
        self._fields = tuple(f.target for f in mapping.unique_fields)
        self._taken_before = taken_before
        self._ledger = UniqueValueLedger(mapping, {name: taken_before.get(name) for name in self._fields})

    def first_guesses(self, sources: Sequence[MappingInput]) -> dict[str, set[str]]:
        """The candidates these users would get if the org had none of them: what to ask the org about."""
        if not self._fields or not sources:
            return {}
        _, unknown = self._ledger.pick(sources)
        return unknown

    def learn(self, asked: Mapping[str, set[str]], found: Iterable[SalesforceUser]) -> None:
        """The org's answer: `found` holds every user having one of the `asked` values (and maybe others)."""
        if not self._fields:
            return
        found = list(found)
        taken = {name: {u.get(name) for u in found if u.get(name)} for name in self._fields}
        self._ledger.learn(asked, taken)
        self._taken_before.add(taken)

    async def pick(self, sources: Sequence[MappingInput]) -> list[Picks | ProvisioningError]:
        """For each user about to be created (in batch order): its SelectUniqueValue fields' values, or
        the error that stops its creation (NoUniqueValue naming the field, or a failed query)."""
        if not self._fields or not sources:
            return [{} for _ in sources]
        queries = 0
        while True:
            picks, unknown = self._ledger.pick(sources)
            if not unknown:
                break
            try:
                taken = await self._org.taken_values(unknown)
            except ProvisioningError as exc:
                return [exc for _ in sources]
            self._ledger.learn(unknown, taken)
            self._taken_before.add(taken)
            queries += 1
        if queries:
            log.info("unique values for %d new users needed %d more queries (candidates taken in the org)",
                     len(sources), queries)
        return picks


def clash_is_transient(error: ProvisioningError, mapping: AttributeMapping) -> ProvisioningError:
    """A create refused because a value SelectUniqueValue picked was taken meanwhile (by another
    worker's batch, or an admin) is retried, and the retry picks another, rather than dead-lettered."""
    field = _CLASH_CODES.get(error.code)
    if field is None or error.transient or field not in {f.target for f in mapping.unique_fields}:
        return error
    return TransientError(error.code, f"{field} was taken after it was checked; the retry picks another",
                          system=error.system, fields=error.fields)
