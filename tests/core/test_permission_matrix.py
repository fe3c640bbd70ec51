"""The permission matrix: every REST call and every WebSocket client frame of the contract, made by each kind of
caller.

One table, MATRIX, names for every call the callers it allows; `refusal()` derives from the contract what every
other caller gets: 401 NOT_AUTHENTICATED for the anonymous caller (on the WebSocket: a refused handshake),
403 NOT_GROUP_MEMBER for a caller outside the group of a call about one group, 403 PERMISSION_DENIED for a member
without the in-group role it takes or a non-staff caller of a staff call. An allowed call answers its documented
status and body; a refused one the contract's error body, and stores nothing.
"""
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable

import pytest

from ai_bridge.models import AIInteractionRecord
from chat.services import message_send
from groups.models import ChatGroup
from tests.support.api import assert_error, counts
from tests.support.waiting import wait_for
from tests.support.ws import communicator, connected, handshake, nothing, receive, receive_many, run
from users.models import Role, User
from users.services import user_tokens

pytestmark = pytest.mark.usefixtures("fresh_channel_layer")

PASSWORD = "matrix-pass-phrase"

CALLERS = ("anonymous", "outsider", "patient", "doctor", "assistant", "staff")
MEMBERS = frozenset({"patient", "doctor", "assistant"})  # of the group under test, in-group role as named
ANYONE = frozenset(CALLERS)
USERS = ANYONE - {"anonymous"}
STAFF = frozenset({"staff"})
DOCTOR_USERS = frozenset({"doctor", "staff"})  # system role DOCTOR (staff is one too), or staff
GROUP_DOCTORS = frozenset({"doctor", "staff"})  # in-group DOCTORs, staff
MEMBERS_STAFF = MEMBERS | STAFF

USER_FIELDS = {"user_id", "username", "user_role", "created_at", "updated_at"}
GROUP_FIELDS = {"group_id", "group_name", "description", "created_by", "ai_enabled", "member_count", "last_seq",
                "created_at", "updated_at"}
MEMBER_FIELDS = {"user_id", "username", "user_role", "joined_at"}
MESSAGE_FIELDS = {"message_id", "group_id", "seq", "from_user_id", "from_role", "msg_type", "content",
                  "client_msg_id", "reply_to", "created_at"}
RECORD_FIELDS = {"record_id", "group_id", "user_message_id", "ai_message_id", "status", "attempts", "duration_ms",
                 "error_message", "created_at", "updated_at"}


# --- what an allowed call answers (`ctx`: the caller, its name, the ids of the world) --------------------------


def paged(body, items: str, *, page_size=20) -> list:
    assert set(body) >= {items, "total", "page", "page_size"}, body
    assert body["page"] == 1 and body["page_size"] == page_size, body
    assert isinstance(body[items], list) and body["total"] >= len(body[items]), body
    return body[items]


def logged_in(body, ctx):
    assert set(body) >= {"access", "refresh", "user"}, body
    assert set(body["user"]) >= USER_FIELDS and body["user"]["user_id"] == ctx.ids["login"]


def refreshed(body, ctx):
    assert isinstance(body["access"], str) and body["access"], body


def minted(body, ctx):
    assert isinstance(body["access"], str) and isinstance(body["refresh"], str), body


def user_created(body, ctx):
    assert set(body) >= USER_FIELDS and body["username"] == "newly_made" and body["user_role"] == "PATIENT", body


def is_me(body, ctx):
    assert set(body) >= USER_FIELDS and body["user_id"] == ctx.caller.user_id, body


def is_the_doctor(body, ctx):
    assert set(body) >= USER_FIELDS and body["user_id"] == ctx.ids["doctor"], body


def role_changed(body, ctx):
    assert set(body) >= USER_FIELDS and body["user_id"] == ctx.ids["role_target"], body
    assert body["user_role"] == "DOCTOR" == User.objects.get(user_id=ctx.ids["role_target"]).user_role


def group_created(body, ctx):
    assert set(body) >= GROUP_FIELDS and body["group_name"] == "New ward", body
    assert body["created_by"] == ctx.caller.user_id and body["member_count"] == 1, body


def groups_listed(body, ctx):
    listed = {group["group_id"] for group in paged(body, "groups")}
    assert all(set(group) >= GROUP_FIELDS for group in body["groups"]), body
    assert (ctx.ids["group_id"] in listed) == (ctx.name in MEMBERS_STAFF), body


def is_the_group(body, ctx):
    assert set(body) >= GROUP_FIELDS and body["group_id"] == ctx.ids["group_id"], body


def group_renamed(body, ctx):
    is_the_group(body, ctx)
    assert body["group_name"] == "Renamed" == ChatGroup.objects.get(group_id=ctx.ids["group_id"]).group_name


def member_added(body, ctx):
    assert set(body) >= MEMBER_FIELDS and body["user_id"] == ctx.ids["newcomer"], body
    assert body["user_role"] == "PATIENT", body


def members_listed(body, ctx):
    assert all(set(member) >= MEMBER_FIELDS for member in body["members"]), body
    roles = {member["user_id"]: member["user_role"] for member in body["members"]}
    assert roles == {ctx.ids["doctor"]: "DOCTOR", ctx.ids["patient"]: "PATIENT", ctx.ids["assistant"]: "AI_ASSISTANT"}


def no_content(body, ctx):
    assert body == b"", body


def message_sent(body, ctx):
    assert set(body) >= MESSAGE_FIELDS and body["content"] == "hello from the matrix", body
    assert body["from_user_id"] == ctx.caller.user_id and body["group_id"] == ctx.ids["group_id"], body
    assert body["seq"] == 3 and body["from_role"] == {"patient": "PATIENT", "doctor": "DOCTOR",
                                                      "assistant": "AI_ASSISTANT"}[ctx.name], body


def is_the_seed(body, ctx):
    assert set(body) >= MESSAGE_FIELDS and body["message_id"] == ctx.ids["message_id"], body


def history_page(body, ctx):
    messages = paged(body, "messages", page_size=5)
    assert body["total"] == 2 and [m["seq"] for m in messages] == [2, 1], body
    assert all(set(m) >= MESSAGE_FIELDS for m in messages), body


def caught_up(body, ctx):
    assert set(body) >= {"messages", "has_more"} and body["has_more"] is False, body
    assert [m["seq"] for m in body["messages"]] == [1, 2], body


def records_listed(body, ctx):
    records = paged(body, "interactions")
    assert [r["record_id"] for r in records] == [ctx.ids["record_id"]] and set(records[0]) >= RECORD_FIELDS, body


def is_the_record(body, ctx):
    assert set(body) >= RECORD_FIELDS and body["record_id"] == ctx.ids["record_id"], body
    assert body["user_message_id"] == ctx.ids["question_id"] and body["group_id"] == ctx.ids["group_id"], body


def probed(body, ctx):
    assert set(body) >= {"ok", "status_code", "duration_ms", "reply", "error"}, body
    assert body["ok"] is True and body["status_code"] == 200 and body["reply"].startswith("Reference AI reply"), body


# --- what an allowed frame answers: `own` the caller's frames by type, `seen` what another member got --------


def ws_acked(own, seen, ctx):
    ack = own["message_ack"]
    assert ack["client_msg_id"] == "m-1" and set(ack["message"]) >= MESSAGE_FIELDS, ack
    message = ack["message"]
    assert message["from_user_id"] == ctx.caller.user_id and message["content"] == "hello from the matrix"
    assert message["group_id"] == ctx.ids["group_id"] and message["seq"] == 2, message
    assert own["message"] == {**message, "type": "message"}
    assert seen == [own["message"]]


def ws_synced(own, seen, ctx):
    result = own["sync_result"]
    assert result["group_id"] == ctx.ids["group_id"] and result["has_more"] is False, result
    assert [m["message_id"] for m in result["messages"]] == [ctx.ids["message_id"]], result
    assert seen == []


def ws_typed(own, seen, ctx):
    assert own == {}
    assert seen == [{"type": "typing", "group_id": ctx.ids["group_id"], "user_id": ctx.caller.user_id}]


def ws_ponged(own, seen, ctx):
    assert isinstance(own["pong"]["server_time"], str) and seen == []


# --- the table -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    allowed: frozenset  # the callers the contract lets through
    in_group: bool  # a call about one group: a caller outside it, not allowed, is NOT_GROUP_MEMBER
    call: tuple | dict  # REST: (method, path, body) with {id} placeholders; WebSocket: the frame
    check: Callable  # what an allowed call answers, beyond its status
    status: int = 200  # REST: the documented status of an allowed call
    replies: tuple = ()  # WebSocket: the frame types an allowed caller gets back
    pushed: bool = False  # WebSocket: an allowed frame reaches the group's other members
    changes: dict = field(default_factory=dict)  # rows an allowed call adds (+) or removes (-)
    needs: tuple = ()  # fixtures an allowed call needs to succeed


MATRIX = {
    # Auth
    "POST /api/auth/token": Rule(
        ANYONE, False, ("post", "/api/auth/token", {"username": "{login_name}", "password": PASSWORD}), logged_in),
    "POST /api/auth/token/refresh": Rule(
        ANYONE, False, ("post", "/api/auth/token/refresh", {"refresh": "{refresh}"}), refreshed),
    "POST /api/user/{user_id}/token": Rule(STAFF, False, ("post", "/api/user/{bridge}/token", None), minted),
    # Users
    "POST /api/user/create": Rule(
        STAFF, False, ("post", "/api/user/create", {"username": "newly_made", "user_role": "PATIENT"}),
        user_created, status=201, changes={"users": 1}),
    "GET /api/user/me": Rule(USERS, False, ("get", "/api/user/me", None), is_me),
    "GET /api/user/{user_id}": Rule(USERS, False, ("get", "/api/user/{doctor}", None), is_the_doctor),
    "PUT /api/user/{user_id}/role": Rule(
        STAFF, False, ("put", "/api/user/{role_target}/role", {"user_role": "DOCTOR"}), role_changed),
    # Groups
    "POST /api/group/create": Rule(
        DOCTOR_USERS, False, ("post", "/api/group/create", {"group_name": "New ward"}), group_created, status=201,
        changes={"groups": 1, "members": 1}),
    "GET /api/group/": Rule(USERS, False, ("get", "/api/group/", None), groups_listed),
    "GET /api/group/{group_id}": Rule(MEMBERS_STAFF, True, ("get", "/api/group/{group_id}", None), is_the_group),
    "PATCH /api/group/{group_id}": Rule(
        GROUP_DOCTORS, True, ("patch", "/api/group/{group_id}", {"group_name": "Renamed"}), group_renamed),
    "POST /api/group/{group_id}/members": Rule(
        GROUP_DOCTORS, True,
        ("post", "/api/group/{group_id}/members", {"user_id": "{newcomer}", "user_role": "PATIENT"}),
        member_added, status=201, changes={"members": 1}),
    "GET /api/group/{group_id}/members": Rule(
        MEMBERS_STAFF, True, ("get", "/api/group/{group_id}/members", None), members_listed),
    # The member itself may leave; a member who is not an in-group DOCTOR may not remove another.
    "DELETE /api/group/{group_id}/members/{the patient}": Rule(
        GROUP_DOCTORS | {"patient"}, True, ("delete", "/api/group/{group_id}/members/{patient}", None), no_content,
        status=204, changes={"members": -1}),
    "DELETE /api/group/{group_id}/members/{the assistant}": Rule(
        GROUP_DOCTORS | {"assistant"}, True, ("delete", "/api/group/{group_id}/members/{assistant}", None),
        no_content, status=204, changes={"members": -1}),
    # Messages: sending needs a real member; reading lets staff in too.
    "POST /api/message/send": Rule(
        MEMBERS, True, ("post", "/api/message/send", {"group_id": "{group_id}", "content": "hello from the matrix"}),
        message_sent, status=201, changes={"messages": 1}),
    "GET /api/message/{message_id}": Rule(
        MEMBERS_STAFF, True, ("get", "/api/message/{message_id}", None), is_the_seed),
    "GET /api/message/list (paged)": Rule(
        MEMBERS_STAFF, True, ("get", "/api/message/list?group_id={group_id}&page=1&page_size=5", None),
        history_page),
    "GET /api/message/list (catch-up)": Rule(
        MEMBERS_STAFF, True, ("get", "/api/message/list?group_id={group_id}&after_seq=0&limit=10", None), caught_up),
    # AI bridge
    "GET /api/ai/interactions": Rule(
        GROUP_DOCTORS, True, ("get", "/api/ai/interactions?group_id={group_id}", None), records_listed),
    "GET /api/ai/interactions/{record_id}": Rule(
        GROUP_DOCTORS, True, ("get", "/api/ai/interactions/{record_id}", None), is_the_record),
    "POST /api/ai/test": Rule(
        STAFF, False, ("post", "/api/ai/test", {"message": "ping?"}), probed, needs=("ai_service",)),
    # WebSocket client frames, against the group
    "WS send_message": Rule(
        MEMBERS, True,
        {"type": "send_message", "group_id": "{group_id}", "content": "hello from the matrix", "client_msg_id": "m-1"},
        ws_acked, replies=("message_ack", "message"), pushed=True, changes={"messages": 1}),
    "WS sync": Rule(MEMBERS_STAFF, True, {"type": "sync", "group_id": "{group_id}", "after_seq": 0}, ws_synced,
                    replies=("sync_result",)),
    "WS typing": Rule(MEMBERS, True, {"type": "typing", "group_id": "{group_id}"}, ws_typed, pushed=True),
    "WS ping": Rule(USERS, False, {"type": "ping"}, ws_ponged, replies=("pong",)),
}

assert all(rule.allowed <= ANYONE for rule in MATRIX.values())


def refusal(rule: Rule, caller: str) -> tuple[int, str] | None:
    """What the contract answers `caller` for a call under `rule`: None when allowed, else (status, code)."""
    if caller in rule.allowed:
        return None
    if caller == "anonymous":
        return 401, "NOT_AUTHENTICATED"
    if rule.in_group and caller not in MEMBERS:
        return 403, "NOT_GROUP_MEMBER"
    return 403, "PERMISSION_DENIED"


def cases(websocket: bool) -> list:
    return [pytest.param(call, caller, id=f"{call} as {caller}")
            for call in MATRIX if call.startswith("WS ") == websocket for caller in CALLERS]


# --- the world the calls are made in ---------------------------------------------------------------------------


def state() -> dict:
    """Everything a refused call must leave as it was."""
    return {
        **counts(),
        "records": AIInteractionRecord.objects.count(),
        "roles": dict(User.objects.values_list("user_id", "user_role")),
        "group_fields": list(ChatGroup.objects.order_by("id").values_list("group_name", "ai_mode", "last_seq")),
    }


def count_changes(before: dict, after: dict) -> dict:
    return {key: after[key] - before[key] for key in counts() if after[key] != before[key]}


def fill(template, ids: dict):
    if isinstance(template, str):
        return template.format(**ids)
    if isinstance(template, dict):
        return {key: fill(value, ids) for key, value in template.items()}
    return template


@pytest.fixture
def callers(outsider, patient, doctor, assistant, staff) -> dict:
    return {"anonymous": None, "outsider": outsider, "patient": patient, "doctor": doctor, "assistant": assistant,
            "staff": staff}


@pytest.fixture
def rest_world(fast_hasher, make_user, care_group, callers, doctor, patient):
    """`care_group` (AI on) with a doctor's message, a patient's question and its AI interaction record, and the
    users the calls name: one who logs in, a passwordless one, one whose role changes, one to be added."""
    login = make_user(Role.PATIENT, username="login_user", password=PASSWORD)
    seed, _ = message_send(sender=doctor, group=care_group, content="seed")
    question, _ = message_send(sender=patient, group=care_group, content="Is this normal?")
    record = wait_for(lambda: AIInteractionRecord.objects.filter(user_message=question).first())
    ids = {
        "group_id": care_group.group_id, "message_id": seed.message_id, "question_id": question.message_id,
        "record_id": record.record_id, "login": login.user_id, "login_name": login.username,
        "refresh": user_tokens(user=login)["refresh"], "bridge": make_user(Role.AI_ASSISTANT).user_id,
        "role_target": make_user(Role.PATIENT).user_id, "newcomer": make_user(Role.PATIENT).user_id,
        **{name: user.user_id for name, user in callers.items() if user is not None},
    }
    return ids


@pytest.mark.django_db
@pytest.mark.parametrize("call,caller", cases(websocket=False))
def test_rest_call(call, caller, rest_world, callers, client_for, request):
    rule, user, refused = MATRIX[call], callers[caller], refusal(MATRIX[call], caller)
    for fixture in rule.needs if not refused else ():
        request.getfixturevalue(fixture)
    method, path, body = rule.call
    before = state()

    response = getattr(client_for(user), method)(fill(path, rest_world), fill(body, rest_world), format="json")

    if refused:
        assert_error(response, *refused)
        assert state() == before
    else:
        assert response.status_code == rule.status, response.content
        ctx = SimpleNamespace(caller=user, name=caller, ids=rest_world)
        rule.check(response.json() if response.content else response.content, ctx)
        assert count_changes(before, state()) == rule.changes


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("call,caller", cases(websocket=True))
def test_websocket_frame(call, caller, quiet_group, callers, doctor, patient):
    rule, user, refused = MATRIX[call], callers[caller], refusal(MATRIX[call], caller)
    seed, _ = message_send(sender=doctor, group=quiet_group, content="seed")
    ids = {"group_id": quiet_group.group_id, "message_id": seed.message_id}
    frame = fill(rule.call, ids)
    before = state()

    if user is None:
        async def refused_handshake():
            accepted, _ = await handshake(communicator(patient.user_id))
            return accepted

        assert refused == (401, "NOT_AUTHENTICATED")
        assert run(refused_handshake) is False
        assert state() == before
        return

    observer = patient if user == doctor else doctor  # another member, who sees what reaches the group

    async def scenario():
        async with connected(observer) as ws_observer, connected(user) as ws:
            await ws.send_json_to(frame)
            if refused:
                own = {"error": await receive(ws)}
            else:
                own = await receive_many(ws, len(rule.replies)) if rule.replies else {}
            seen = [await receive(ws_observer)] if rule.pushed and not refused else []
            if rule.pushed:  # what reaches the group, and only that, whether allowed or refused
                await nothing(ws, ws_observer)
            return own, seen

    own, seen = run(scenario)

    if refused:
        error = own["error"]
        assert error["type"] == "error" and error["code"] == refused[1], error
        assert isinstance(error["message"], str) and error["message"], error
        assert error.get("client_msg_id") == frame.get("client_msg_id"), error
        assert seen == []
        assert state() == before
    else:
        assert set(own) == set(rule.replies), own
        rule.check(own, seen, SimpleNamespace(caller=user, name=caller, ids=ids))
        assert count_changes(before, state()) == rule.changes
