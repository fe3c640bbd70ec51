"""A care team that sends as a careful client does, through proxies and restarts (nginx, rolling restart)."""
import asyncio
import uuid

import httpx

from groups.services import group_create, member_add
from users.models import Role

# Limits out of the way: these tests count messages, not refusals.
UNTHROTTLED_ENV = {"IM_SEND_RATE": "100000/min", "WS_RATE_MESSAGES": "100000"}


def care_team(make_user, patients: int):
    """A doctor and `patients` patients in a group with the AI off: `(doctor, patients, group)`."""
    doctor = make_user(Role.DOCTOR)
    members = [make_user(Role.PATIENT) for _ in range(patients)]
    group = group_create(creator=doctor, group_name="Behind nginx", ai_enabled=False)
    for patient in members:
        member_add(group=group, user=patient, user_role=Role.PATIENT)
    return doctor, members, group


async def send_until_stored(http: httpx.AsyncClient, token: str, group_id: str, content: str) -> tuple[dict, int]:
    """Send as a careful client does: one client_msg_id, retried on a 503 or a cut connection until answered;
    the stored message and how many attempts it took."""
    body = {"group_id": group_id, "content": content, "client_msg_id": uuid.uuid4().hex}
    for attempt in range(1, 40):
        try:
            r = await http.post("/api/message/send", json=body, headers={"Authorization": f"Bearer {token}"})
        except httpx.TransportError:
            await asyncio.sleep(0.1)
            continue
        if r.status_code in (200, 201):
            return r.json(), attempt
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "SERVICE_UNAVAILABLE", r.text
        await asyncio.sleep(0.1)
    raise AssertionError(f"{content!r} never stored")
