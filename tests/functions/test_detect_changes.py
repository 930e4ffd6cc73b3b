"""detect_changes as the host calls it: a real TimerRequest, the demo tenant in the Graph emulator, and
what reached the real queue. The cycles of this module build on each other through fixtures, so any
test also runs alone."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest_asyncio
from azure.functions.timer import TimerRequest

from cli.local_stack import QUEUE
from emulators.graph.demo_tenant import GROUP_ROLES


@dataclass(frozen=True)
class Cycle:
    bodies: list[dict[str, Any]]  # what the queue accepted during the cycle
    transfers: int  # sends that reached the queue, duplicates included

    @property
    def user_ids(self) -> list[str]:
        return [b["entraId"] for b in self.bodies]


async def run_timer(stack, functions, *, past_due: bool = False) -> Cycle:
    bus = stack.servicebus
    seen, transfers = len(bus.messages_seen(QUEUE)), bus.transfers_received(QUEUE)
    await functions["detect_changes"](TimerRequest(past_due=past_due))
    return Cycle([json.loads(m.body or b"") for m in bus.messages_seen(QUEUE)[seen:]],
                 bus.transfers_received(QUEUE) - transfers)


@pytest_asyncio.fixture(scope="module")
async def first_cycle(stack, functions) -> Cycle:
    return await run_timer(stack, functions)


@pytest_asyncio.fixture(scope="module")
async def second_cycle(stack, functions, first_cycle) -> Cycle:
    return await run_timer(stack, functions)


def only_directly_assigned(stack) -> str:
    """A user whose one app role comes from one direct assignment, not from a group."""
    in_assigned_groups = {member["id"] for name, role in GROUP_ROLES.items() if role
                          for member in stack.tenant.group_members(stack.demo.group_ids[name])}
    return next(u for u in sorted(stack.demo.expected_roles)
                if u not in in_assigned_groups and len(stack.tenant.assignments_of(u)) == 1)


async def test_the_first_cycle_enqueues_every_assigned_user_once(stack, first_cycle):
    demo = stack.demo
    ids = first_cycle.user_ids
    assert len(ids) == len(set(ids)) == len(demo.expected_roles)
    assert set(ids) == set(demo.expected_roles)  # direct and group-granted, disabled ones included
    assert set(ids) >= demo.disabled_ids | demo.default_access_only_ids | demo.two_role_ids
    assert not set(ids) & (demo.nested_only_ids | demo.unassigned_ids | demo.soft_deleted_ids | demo.hard_deleted_ids)
    assert {b["reason"] for b in first_cycle.bodies} == {"assignment"}
    assert stack.servicebus.duplicates_dropped(QUEUE) == 0


async def test_a_second_cycle_without_changes_sends_nothing(second_cycle):
    assert second_cycle.bodies == []
    assert second_cycle.transfers == 0  # not even duplicates that the queue would drop


async def test_an_unassignment_enqueues_exactly_that_user(stack, functions, second_cycle):
    user = only_directly_assigned(stack)
    [assignment] = stack.tenant.assignments_of(user)
    stack.tenant.unassign(assignment.id)

    cycle = await run_timer(stack, functions, past_due=True)  # a late timer still runs the cycle

    assert cycle.user_ids == [user]
    assert cycle.bodies[0]["reason"] == "assignment"
