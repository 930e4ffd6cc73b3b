"""Users a test adds to the demo tenant, so its expectations do not depend on the seeded population."""
from __future__ import annotations

from typing import Any

from cli.local_stack import LocalStack


def hire(stack: LocalStack, given: str, surname: str, role: str = "Standard User", **attributes: Any) -> str:
    """Add a live user `Given.Surname@<domain>` (case kept) with mail = UPN, assign it `role` of the
    Salesforce app, and return its object id. An attribute given as None is left out."""
    upn = f"{given}.{surname}@{stack.tenant.domain}"
    person = {"userPrincipalName": upn, "displayName": f"{given} {surname}", "givenName": given, "surname": surname,
              "mail": upn, "preferredLanguage": "en-GB", **attributes}
    user_id = stack.tenant.add_user(**{k: v for k, v in person.items() if v is not None})
    stack.tenant.assign(stack.demo.service_principal_id, user_id, stack.demo.app_role_ids[role])
    return user_id


def upn_of(stack: LocalStack, user_id: str) -> str:
    user = stack.tenant.find_user(user_id)
    assert user is not None, f"no live user {user_id}"
    return user["userPrincipalName"]
