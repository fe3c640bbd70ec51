"""Read state: a member's watermark moves only forward and never past last_seq, by POST /read or the `read` frame;
unread counts follow sends by others (not one's own); read receipts reach the group's members."""
import asyncio

import httpx
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.services import message_send
from groups.models import GroupMember
from groups.services import group_create, read_mark
from tests.support.api import access_token, assert_error
from tests.support.live import needs_real_services
from tests.support.ws import ask, connected, nothing, receive, run
from tests.support.wsclient import Client
from users.models import Role

pytestmark = pytest.mark.usefixtures("fresh_channel_layer")


def read(client, group, seq):
    return client.post(f"/api/group/{group.group_id}/read", {"seq": seq}, format="json")


def sends(sender, group, count):
    for i in range(count):
        message_send(sender=sender, group=group, content=f"{sender.username} {i}")


def watermark(group, user):
    return GroupMember.objects.get(group=group, user=user).last_read_seq


# --- POST /api/group/{group_id}/read ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/group/{}/read", "/api/group/{}/read/"])
def test_reading_answers_the_watermark_and_what_is_left_unread(care_group, doctor, patient, client_for, path):
    sends(doctor, care_group, 3)

    response = client_for(patient).post(path.format(care_group.group_id), {"seq": 2}, format="json")

    assert response.status_code == 200, response.content
    assert response.json() == {"group_id": care_group.group_id, "last_read_seq": 2, "unread_count": 1}
    assert watermark(care_group, patient) == 2


def test_the_watermark_only_moves_forward(care_group, doctor, patient, client_for):
    sends(doctor, care_group, 3)
    client = client_for(patient)

    assert read(client, care_group, 3).json()["last_read_seq"] == 3
    lowered = read(client, care_group, 1)

    assert lowered.status_code == 200 and lowered.json() == {"group_id": care_group.group_id, "last_read_seq": 3,
                                                             "unread_count": 0}
    assert watermark(care_group, patient) == 3


def test_the_watermark_never_passes_last_seq(care_group, doctor, patient, client_for):
    sends(doctor, care_group, 2)

    assert read(client_for(patient), care_group, 10**12).json()["last_read_seq"] == 2
    sends(doctor, care_group, 1)
    assert client_for(patient).get(f"/api/group/{care_group.group_id}").json()["unread_count"] == 1


def test_outsiders_and_staff_outside_the_group_are_refused(care_group, doctor, patient, outsider, staff,
                                                            client_for):
    sends(doctor, care_group, 1)

    assert_error(read(client_for(outsider), care_group, 1), 403, "NOT_GROUP_MEMBER")
    assert_error(read(client_for(staff), care_group, 1), 403, "NOT_GROUP_MEMBER")  # staff have no read state
    assert_error(client_for(patient).post("/api/group/group_nosuch/read", {"seq": 1}, format="json"),
                 404, "NOT_FOUND")
    assert GroupMember.objects.filter(group=care_group, last_read_seq__gt=0).count() == 0


@pytest.mark.parametrize("body", [{}, {"seq": -1}, {"seq": "many"}, {"seq": 1.5}, {"seq": None}, {"seq": 2**63},
                                  {"seq": [1]}])
def test_bad_input_is_refused(care_group, patient, client_for, body):
    response = client_for(patient).post(f"/api/group/{care_group.group_id}/read", body, format="json")

    assert_error(response, 400, "VALIDATION_ERROR")
    assert watermark(care_group, patient) == 0


def test_anonymous_callers_are_refused(care_group, client_for):
    assert_error(read(client_for(), care_group, 1), 401, "NOT_AUTHENTICATED")


def test_a_read_that_moves_nothing_writes_nothing_and_tells_nobody(care_group, doctor, patient,
                                                                  django_capture_on_commit_callbacks):
    sends(doctor, care_group, 2)
    with django_capture_on_commit_callbacks() as moved:
        assert read_mark(group=care_group, user=patient, seq=2) == 2
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks() as repeated:
        assert read_mark(group=care_group, user=patient, seq=2) == 2
        assert read_mark(group=care_group, user=patient, seq=1) == 2

    assert len(moved) == 1 and repeated == []  # one read_receipt, for the read that moved the watermark
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(writes) == 2 and all("last_read_seq" in w and "<" in w for w in writes)  # conditional: no row


# --- unread counts ---------------------------------------------------------------------------------------


def test_unread_counts_follow_others_sends_not_ones_own(care_group, doctor, patient, client_for):
    def unread(user):
        client = client_for(user)
        detail = client.get(f"/api/group/{care_group.group_id}").json()
        listed = client.get("/api/group/").json()["groups"][0]
        assert (detail["last_read_seq"], detail["unread_count"]) == (listed["last_read_seq"], listed["unread_count"])
        return detail["unread_count"]

    assert (unread(doctor), unread(patient)) == (0, 0)
    sends(doctor, care_group, 2)
    assert (unread(doctor), unread(patient)) == (0, 2)  # the doctor's own messages are never unread to them
    sends(patient, care_group, 1)
    assert (unread(doctor), unread(patient)) == (1, 2)
    read(client_for(patient), care_group, 3)
    assert unread(patient) == 0
    sends(patient, care_group, 2)
    sends(doctor, care_group, 1)
    assert (unread(doctor), unread(patient)) == (3, 1)  # own sends after the watermark are not counted either


def test_staff_outside_the_group_see_no_read_state(care_group, doctor, staff, client_for):
    sends(doctor, care_group, 1)

    body = client_for(staff).get(f"/api/group/{care_group.group_id}").json()

    assert body["last_read_seq"] is None and body["unread_count"] is None


def test_the_members_list_says_how_far_each_member_has_read(care_group, doctor, patient, assistant, client_for):
    sends(doctor, care_group, 4)
    read(client_for(patient), care_group, 3)
    read(client_for(doctor), care_group, 4)

    members = client_for(patient).get(f"/api/group/{care_group.group_id}/members").json()["members"]

    assert {m["user_id"]: m["last_read_seq"] for m in members} == {doctor.user_id: 4, patient.user_id: 3,
                                                                   assistant.user_id: 0}


def test_the_group_list_costs_the_same_queries_for_1_and_50_groups(settings, doctor, patient, client_for,
                                                                   django_assert_max_num_queries):
    """Unread counts are seq arithmetic less one's own messages after the watermark: no query per group."""
    settings.AUTH_USER_CACHE_SECONDS = 0  # the caller's row read each time, as the count below says

    def listed():
        with CaptureQueriesContext(connection) as queries:
            response = client_for(patient).get("/api/group/?page_size=100")
        assert response.status_code == 200
        return response.json()["groups"], len(queries)

    first = group_create(creator=doctor, group_name="Team 0", members=[(patient, Role.PATIENT)])
    sends(doctor, first, 3)
    sends(patient, first, 1)
    one, queries_for_one = listed()
    for i in range(1, 50):
        group = group_create(creator=doctor, group_name=f"Team {i}", members=[(patient, Role.PATIENT)])
        sends(doctor, group, i % 4)
        sends(patient, group, i % 3)

    with django_assert_max_num_queries(3):  # the caller, the count, the page with its read state
        response = client_for(patient).get("/api/group/?page_size=100")
    groups, queries_for_fifty = listed()

    assert response.status_code == 200 and len(groups) == 50
    assert queries_for_fifty == queries_for_one
    assert {g["group_name"]: g["unread_count"] for g in groups} == {f"Team {i}": (i % 4 if i else 3) for i in range(50)}
    assert one[0]["unread_count"] == 3


def test_the_own_messages_query_uses_the_sender_index(doctor, patient):
    """On PostgreSQL: own messages after the watermark are found in the (sender, group, seq) index."""
    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    from groups.models import ChatGroup

    group = group_create(creator=doctor, group_name="Plan", members=[(patient, Role.PATIENT)])
    sends(patient, group, 2)
    query = ChatGroup.objects.filter(pk=group.pk).with_read_state(patient).values("unread")
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a tiny table: ask whether the index can serve, not whether
        plan = query.explain()                       # the planner prefers a scan of four rows
        cursor.execute("SET enable_seqscan = on")
    assert "ix_message_sender_group_seq" in plan, plan


# --- the `read` frame and read receipts -------------------------------------------------------------------


transactional = pytest.mark.django_db(transaction=True)


@transactional
def test_a_read_frame_moves_the_watermark_and_every_member_gets_the_receipt(doctor, patient, quiet_group):
    for i in range(3):
        message_send(sender=doctor, group=quiet_group, content=f"m{i}")
    receipt = {"type": "read_receipt", "group_id": quiet_group.group_id, "user_id": patient.user_id,
               "last_read_seq": 2}

    async def scenario():
        async with connected(patient) as reader, connected(patient) as reader_2, connected(doctor) as ws_doctor:
            assert reader.hello["groups"][0]["unread_count"] == 3
            await reader.send_json_to({"type": "read", "group_id": quiet_group.group_id, "seq": 2})
            return [await receive(ws) for ws in (reader, reader_2, ws_doctor)]

    assert run(scenario) == [receipt, receipt, receipt]  # the reader's other connections follow too
    assert watermark(quiet_group, patient) == 2


@transactional
def test_the_connected_frame_carries_the_read_state(doctor, patient, quiet_group):
    for i in range(5):
        message_send(sender=doctor, group=quiet_group, content=f"m{i}")
    message_send(sender=patient, group=quiet_group, content="mine")
    read_mark(group=quiet_group, user=patient, seq=2)

    async def scenario():
        async with connected(patient) as ws:
            return ws.hello["groups"]

    assert run(scenario) == [{"group_id": quiet_group.group_id, "last_seq": 6, "last_read_seq": 2,
                              "unread_count": 3}]


@transactional
def test_a_burst_of_read_frames_writes_at_most_once_per_interval(doctor, patient, quiet_group, settings):
    settings.IM_READ_COALESCE_SECONDS = 0.4
    for i in range(10):
        message_send(sender=doctor, group=quiet_group, content=f"m{i}")

    async def scenario():
        async with connected(patient) as reader, connected(doctor) as ws_doctor:
            for seq in range(1, 11):  # a client scrolling through ten screens in a moment
                await reader.send_json_to({"type": "read", "group_id": quiet_group.group_id, "seq": seq})
            first = await receive(ws_doctor)
            last = await receive(ws_doctor)  # written when the interval ends: the highest seq of the burst
            await nothing(ws_doctor)
            return first["last_read_seq"], last["last_read_seq"]

    assert run(scenario) == (1, 10)  # two writes for ten frames
    assert watermark(quiet_group, patient) == 10


@transactional
def test_bad_read_frames_get_an_error_and_the_connection_stays(patient, quiet_group, make_user):
    elsewhere = group_create(creator=make_user(Role.DOCTOR), group_name="Elsewhere", ai_enabled=False)

    async def scenario():
        async with connected(patient) as ws:
            answers = [await ask(ws, frame) for frame in (
                {"type": "read", "group_id": quiet_group.group_id},
                {"type": "read", "group_id": quiet_group.group_id, "seq": -3},
                {"type": "read", "group_id": quiet_group.group_id, "seq": "2"},
                {"type": "read", "seq": 1},
                {"type": "read", "group_id": elsewhere.group_id, "seq": 1},
            )]
            pong = await ask(ws, {"type": "ping"})
            return [(a["type"], a["code"]) for a in answers], pong["type"]

    answers, pong = run(scenario)
    assert answers == [("error", "VALIDATION_ERROR")] * 4 + [("error", "NOT_GROUP_MEMBER")]
    assert pong == "pong"
    assert watermark(quiet_group, patient) == 0


# --- two server processes ---------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@needs_real_services()
def test_read_receipts_reach_members_on_the_other_server(start_server, make_user):
    doctor, patient = make_user(Role.DOCTOR), make_user(Role.PATIENT)
    group = group_create(creator=doctor, group_name="Two servers", ai_enabled=False,
                         members=[(patient, Role.PATIENT)])
    for i in range(4):
        message_send(sender=doctor, group=group, content=f"m{i}")
    a, b = start_server("a"), start_server("b")

    async def scenario():
        reader = Client("patient@a", patient.user_id, access_token(patient))
        watcher = Client("doctor@b", doctor.user_id, access_token(doctor))
        hello = await reader.connect(a.ws_url)
        await watcher.connect(b.ws_url)
        assert hello["groups"][0]["unread_count"] == 4
        await reader.send({"type": "read", "group_id": group.group_id, "seq": 3})
        by_frame = await watcher.wait_for(lambda f: f["type"] == "read_receipt")
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{b.url}/api/group/{group.group_id}/read", json={"seq": 4},
                                     headers={"Authorization": f"Bearer {access_token(patient)}"})
        by_http = await reader.wait_for(lambda f: f["type"] == "read_receipt" and f["last_read_seq"] == 4)
        await asyncio.gather(reader.close(), watcher.close())
        return by_frame, answer.json(), by_http

    by_frame, answer, by_http = asyncio.run(scenario())
    assert by_frame == {"type": "read_receipt", "group_id": group.group_id, "user_id": patient.user_id,
                        "last_read_seq": 3}
    assert answer == {"group_id": group.group_id, "last_read_seq": 4, "unread_count": 0}
    assert by_http["user_id"] == patient.user_id
