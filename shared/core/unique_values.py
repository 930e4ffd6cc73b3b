"""SelectUniqueValue for a batch of users being created: which candidates must the org be asked about,
and which value does each user get.

Salesforce has no "reserve this nickname" call, so the engine asks which candidates some user in the
org already has, then picks for each user the first candidate that is neither taken in the org nor
picked by an earlier user of the same batch:

    ledger = UniqueValueLedger(mapping, known_taken)
    while True:
        picks, unknown = ledger.pick(sources)     # unknown: field → candidates never asked about
        if not unknown:
            break                                  # every pick is checked against the org
        ledger.learn(unknown, taken=await org.taken_values(unknown))

A round presumes unknown candidates free, so it asks about exactly the values it would pick (plus the
next candidates of users whose first one an earlier user of the batch took). A user whose candidate
turns out taken has all its remaining candidates asked about in the next round, so a crowded name costs
one more query, not one per candidate. `known_taken` are values seen taken before (by earlier
batches): they are skipped without asking; a value is never known to be free, since anyone may take
it meanwhile. Values compare case-insensitively, as Salesforce compares text.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Mapping, Sequence

from .errors import ProvisioningError
from .mapping import AttributeMapping, MappingInput
from .planning import Operation

Picks = dict[str, Any]  # Salesforce field → the value SelectUniqueValue picked (or the field's default)


class UniqueValueLedger:
    """What one batch knows about its SelectUniqueValue candidates: those asked about, those taken."""

    def __init__(self, mapping: AttributeMapping, known_taken: Mapping[str, Iterable[str]] | None = None) -> None:
        self._mapping = mapping
        self._candidates = {f.target: f.unique_candidates for f in mapping.unique_fields}
        self._asked: dict[str, set[str]] = {name: set() for name in self._candidates}
        self._taken: dict[str, set[str]] = {name: set() for name in self._candidates}  # answered by the org
        self._known = {name: frozenset(_key(v) for v in (known_taken or {}).get(name, ())) for name in self._candidates}

    def pick(self, sources: Sequence[MappingInput]) -> tuple[list[Picks | ProvisioningError], dict[str, set[str]]]:
        """Each user's picks in batch order (or its error, e.g. NoUniqueValue naming the field), and the
        candidates this round relied on without having asked the org about them."""
        picked: dict[str, set[str]] = {name: set() for name in self._candidates}
        unknown: dict[str, set[str]] = {}
        crowded: set[str] = set()  # fields where the current user met a value the org answered taken

        def is_unique(field: str, value: Any) -> bool:
            key = _key(value)
            if key in self._taken[field]:
                crowded.add(field)
            if key in picked[field] or key in self._taken[field] or key in self._known[field]:
                return False
            if key not in self._asked[field]:
                unknown.setdefault(field, set()).add(str(value))
            return True

        results: list[Picks | ProvisioningError] = []
        for source in sources:
            crowded.clear()
            try:
                picks = self._mapping.apply(replace(source, is_unique=is_unique), only=self._candidates.keys())
            except ProvisioningError as exc:
                results.append(exc)
            else:
                for field, value in picks.items():
                    picked[field].add(_key(value))
                results.append(picks)
            for field in crowded:  # ask about the rest of this user's candidates at once
                rest = {str(v) for v in self._candidates[field](source)  # type: ignore[misc]
                        if _key(v) not in self._asked[field] and _key(v) not in self._known[field]}
                if rest:
                    unknown.setdefault(field, set()).update(rest)
        return results, unknown

    def learn(self, asked: Mapping[str, Iterable[str]], taken: Mapping[str, Iterable[str]]) -> None:
        """Record the org's answer: of the values `asked` about, those in `taken` some user already has."""
        for field, values in asked.items():
            self._asked[field].update(_key(v) for v in values)
        for field, values in taken.items():
            if field in self._taken:
                self._taken[field].update(_key(v) for v in values)


def with_picks(operation: Operation, picks: Picks) -> Operation:
    """A create with its SelectUniqueValue fields set to the values picked against the org."""
    if not picks:
        return operation
    return replace(operation, record={**operation.record, **picks},
                   changes={**operation.changes, **{name: (None, value) for name, value in picks.items()}})


def _key(value: Any) -> str:
    return str(value).casefold()
