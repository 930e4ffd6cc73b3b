"""Picking users for e2e steps that build on one another: users the app has provisioned and not
deactivated, enabled in Entra, and not picked by an earlier step of the module."""
from __future__ import annotations

from cli.local_stack import LocalStack
from shared.core.ports import StateStore


def untouched_users(stack: LocalStack, state: StateStore, count: int, used: set[str]) -> list[str]:
    """`count` such users, in id order; they are added to `used`, which the module keeps."""
    chosen = []
    for user_id in sorted(stack.demo.expected_roles):
        link = state.get_link(user_id)
        user = stack.tenant.find_user(user_id)
        if link and link.last_outcome != "deactivate" and user and user.get("accountEnabled", True) and user_id not in used:
            chosen.append(user_id)
            used.add(user_id)
            if len(chosen) == count:
                return chosen
    raise AssertionError("not enough provisioned users left")
