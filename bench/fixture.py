"""The benchmark's users and groups, written through the services like any other."""
from django.db import transaction

from groups.services import group_create
from users.models import Role
from users.services import user_create, user_tokens


def _member(user, role: str, group) -> dict:
    return {"user_id": user.user_id, "token": user_tokens(user=user)["access"], "role": role,
            "group_id": group.group_id}


def care_teams(prefix: str, *, patients: int, ai_enabled: bool) -> list[dict]:
    """Groups of a doctor, up to three patients and the AI assistant, until `patients` patients are placed.

    Members come out group by group, so consecutive Locust users (spread over the servers) share a group."""
    members = []
    for g in range(0, patients, 3):
        with transaction.atomic():
            doctor = user_create(username=f"{prefix}-d{g}", user_role=Role.DOCTOR)
            team = [user_create(username=f"{prefix}-p{g + i}", user_role=Role.PATIENT)
                    for i in range(min(3, patients - g))]
            assistant = user_create(username=f"{prefix}-a{g}", user_role=Role.AI_ASSISTANT)
            group = group_create(creator=doctor, group_name=f"{prefix} care team {g // 3 + 1}", ai_enabled=ai_enabled,
                                 members=[*((p, Role.PATIENT) for p in team), (assistant, Role.AI_ASSISTANT)])
        members += [_member(doctor, Role.DOCTOR, group), *(_member(p, Role.PATIENT, group) for p in team),
                    _member(assistant, Role.AI_ASSISTANT, group)]
    return members


def crowd(prefix: str, size: int) -> tuple[list[dict], dict]:
    """One announcement group of `size` listening patients and the doctor who announces."""
    with transaction.atomic():
        announcer = user_create(username=f"{prefix}-announcer", user_role=Role.DOCTOR)
        listeners = [user_create(username=f"{prefix}-l{i}", user_role=Role.PATIENT) for i in range(size)]
        group = group_create(creator=announcer, group_name=f"{prefix} announcements", ai_enabled=False,
                             members=[(user, Role.PATIENT) for user in listeners])
    return [_member(user, Role.PATIENT, group) for user in listeners], _member(announcer, Role.DOCTOR, group)
