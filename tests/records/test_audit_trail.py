"""The audit trail: each audited action writes exactly one event (who, what, which record, which request); events
are listed to staff and can be changed or deleted through no interface."""
import json

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from ai_bridge.models import AIInteractionRecord
from chat.services import message_send
from groups.models import GroupMember
from groups.services import group_update, member_add, member_role_change
from records.models import AppendOnly, AuditEvent
from tests.support.api import assert_error
from users.models import Role


def events(**filters):
    return list(AuditEvent.objects.filter(**filters).order_by("id").values_list("actor_id", "action", "target",
                                                                               "details"))


@pytest.fixture
def trail():
    """The events written from now on (request it after the fixtures whose own events do not count)."""
    start = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    return lambda: events(id__gt=start)


@pytest.fixture
def ai_record(care_group, patient):
    message = message_send(sender=patient, group=care_group, content="I feel dizzy")[0]
    return AIInteractionRecord.objects.filter(user_message=message).first() or \
        AIInteractionRecord.objects.create(group=care_group, user_message=message)


# --- one event per action -----------------------------------------------------------------------------------


def test_a_role_change_writes_one_event_naming_who_what_and_the_request(staff, patient, client_for):
    response = client_for(staff).put(f"/api/user/{patient.user_id}/role", {"user_role": "DOCTOR"}, format="json",
                                     HTTP_X_REQUEST_ID="req-role-1")

    assert response.status_code == 200
    [event] = AuditEvent.objects.all()
    assert (event.actor_id, event.action, event.target, event.details) == (
        staff.user_id, "user.role_change", patient.user_id, {"from": "PATIENT", "to": "DOCTOR"})
    assert event.request_id == "req-role-1" == response["X-Request-ID"]
    assert event.event_id.startswith("evt_") and event.created_at is not None


def test_a_role_change_to_the_same_role_writes_nothing(staff, patient, client_for):
    client_for(staff).put(f"/api/user/{patient.user_id}/role", {"user_role": "PATIENT"}, format="json")

    assert events() == []


def test_deactivation_and_reactivation_write_one_event_each(staff, patient, client_for):
    client = client_for(staff)
    client.post(f"/api/user/{patient.user_id}/deactivate")
    client.post(f"/api/user/{patient.user_id}/deactivate")  # already inactive: nothing happens, nothing is written
    client.post(f"/api/user/{patient.user_id}/reactivate")

    assert events() == [(staff.user_id, "user.deactivate", patient.user_id, {}),
                        (staff.user_id, "user.reactivate", patient.user_id, {})]


def test_member_adds_and_removals_write_one_event_each(care_group, doctor, outsider, client_for, trail):
    client = client_for(doctor)
    client.post(f"/api/group/{care_group.group_id}/members", {"user_id": outsider.user_id, "user_role": "PATIENT"},
                format="json")
    client.post(f"/api/group/{care_group.group_id}/members", {"user_id": outsider.user_id, "user_role": "PATIENT"},
                format="json")  # 409 ALREADY_MEMBER: nothing happened
    client.delete(f"/api/group/{care_group.group_id}/members/{outsider.user_id}")

    assert trail() == [
        (doctor.user_id, "member.add", care_group.group_id, {"user_id": outsider.user_id, "user_role": "PATIENT"}),
        (doctor.user_id, "member.remove", care_group.group_id, {"user_id": outsider.user_id, "user_role": "PATIENT"}),
    ]


def test_group_creation_writes_one_member_add_per_member(doctor, patient, client_for):
    body = client_for(doctor).post("/api/group/create", {"group_name": "Team", "members": [
        {"user_id": patient.user_id, "user_role": "PATIENT"}]}, format="json").json()

    assert [(a, t, d["user_id"]) for _, a, t, d in events()] == [
        ("member.add", body["group_id"], doctor.user_id), ("member.add", body["group_id"], patient.user_id)]


def test_an_in_group_role_change_writes_one_event(care_group, patient, trail):
    member = GroupMember.objects.get(group=care_group, user=patient)
    member_role_change(member=member, user_role=Role.DOCTOR)
    member_role_change(member=member, user_role=Role.DOCTOR)

    assert trail() == [("", "member.role_change", care_group.group_id,  # no request: the system acted
                         {"user_id": patient.user_id, "from": "PATIENT", "to": "DOCTOR"})]


def test_ai_mode_changes_write_one_event_and_renames_none(care_group, doctor, client_for, trail):
    client = client_for(doctor)
    client.patch(f"/api/group/{care_group.group_id}", {"ai_mode": "review"}, format="json")
    client.patch(f"/api/group/{care_group.group_id}", {"group_name": "Renamed"}, format="json")
    client.patch(f"/api/group/{care_group.group_id}", {"ai_enabled": False}, format="json")
    client.patch(f"/api/group/{care_group.group_id}", {"ai_mode": "off"}, format="json")

    assert trail() == [
        (doctor.user_id, "group.ai_mode_change", care_group.group_id, {"from": "auto", "to": "review"}),
        (doctor.user_id, "group.ai_mode_change", care_group.group_id, {"from": "review", "to": "off"}),
    ]


def test_a_staff_read_of_an_ai_record_writes_one_event_and_a_doctors_none(ai_record, care_group, doctor, staff,
                                                                          client_for, trail):
    assert "request_body" not in client_for(doctor).get(f"/api/ai/interactions/{ai_record.record_id}").json()
    assert "request_body" in client_for(staff).get(f"/api/ai/interactions/{ai_record.record_id}").json()

    assert trail() == [(staff.user_id, "ai_record.read", ai_record.record_id, {"group_id": care_group.group_id})]


@pytest.mark.parametrize("fmt", ["json", "fhir"])
def test_each_export_writes_one_event(care_group, doctor, client_for, fmt, trail):
    response = client_for(doctor).get(f"/api/group/{care_group.group_id}/export?format={fmt}")
    b"".join(response.streaming_content)

    assert trail() == [(doctor.user_id, "group.export", care_group.group_id,
                         {"format": fmt, "last_seq": 0, "ai_bodies": False, "via": "api"})]


def test_admin_actions_are_audited_through_the_services(admin_browser, superuser, patient, care_group, trail):
    admin_browser.post("/admin/users/user/", {"action": "deactivate", "_selected_action": [patient.pk]})
    admin_browser.post(f"/admin/groups/chatgroup/{care_group.pk}/change/", {
        "group_name": care_group.group_name, "description": "", "ai_mode": "off",
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000"})

    assert trail() == [(superuser.user_id, "user.deactivate", patient.user_id, {}),
                        (superuser.user_id, "group.ai_mode_change", care_group.group_id, {"from": "auto", "to": "off"})]


def test_a_change_that_rolls_back_leaves_no_event(care_group, outsider, trail):
    with pytest.raises(RuntimeError), transaction.atomic():
        member_add(group=care_group, user=outsider, user_role=Role.PATIENT)
        raise RuntimeError("a later step of the same change failed")

    assert trail() == []


def test_the_system_is_the_actor_outside_requests(care_group, trail):
    group_update(group=care_group, ai_mode="review")

    assert trail()[0][:2] == ("", "group.ai_mode_change")


# --- GET /api/audit ---------------------------------------------------------------------------------------------


def test_staff_list_events_newest_first_with_filters_and_paging(staff, patient, doctor, care_group, client_for):
    client = client_for(staff)
    client.put(f"/api/user/{patient.user_id}/role", {"user_role": "DOCTOR"}, format="json")
    client.put(f"/api/user/{doctor.user_id}/role", {"user_role": "PATIENT"}, format="json")
    client.post(f"/api/user/{patient.user_id}/deactivate")

    everything = client.get("/api/audit").json()
    by_action = client.get("/api/audit?action=user.role_change&actor=&target=").json()
    by_target = client.get(f"/api/audit?target={patient.user_id}").json()
    by_actor = client.get(f"/api/audit?actor={staff.user_id}&page=2&page_size=2").json()

    assert set(everything) == {"events", "total", "page", "page_size"}
    assert set(everything["events"][0]) == {"event_id", "actor_id", "action", "target", "details", "request_id",
                                            "created_at"}
    assert [e["action"] for e in everything["events"][:3]] == ["user.deactivate", "user.role_change",
                                                               "user.role_change"]  # newest first
    assert everything["total"] == AuditEvent.objects.count()  # the fixture's member adds too
    assert [e["target"] for e in by_action["events"]] == [doctor.user_id, patient.user_id]
    assert [e["action"] for e in by_target["events"]] == ["user.deactivate", "user.role_change"]
    assert by_actor["total"] == 3 and by_actor["page"] == 2 and [e["target"] for e in by_actor["events"]] == [
        patient.user_id]


@pytest.mark.parametrize("who", ["doctor", "patient"])
def test_only_staff_read_the_trail(care_group, client_for, request, who):
    assert_error(client_for(request.getfixturevalue(who)).get("/api/audit"), 403, "PERMISSION_DENIED")
    assert_error(client_for().get("/api/audit"), 401, "NOT_AUTHENTICATED")


@pytest.mark.parametrize("query", ["page=0", "page_size=101", "page=x", "action=" + "x" * 65])
def test_bad_paging_or_filters_are_refused(staff, client_for, query):
    assert_error(client_for(staff).get(f"/api/audit?{query}"), 400, "VALIDATION_ERROR")


# --- nobody changes or deletes an event ------------------------------------------------------------------------


def test_the_api_has_no_way_to_change_or_delete_events(staff, patient, client_for):
    client_for(staff).post(f"/api/user/{patient.user_id}/deactivate")
    event = AuditEvent.objects.get()
    client = client_for(staff)

    for method in ("post", "put", "patch", "delete"):
        assert_error(getattr(client, method)("/api/audit", {}, format="json"), 405, "METHOD_NOT_ALLOWED")
        assert getattr(client, method)(f"/api/audit/{event.event_id}", {}, format="json").status_code == 404

    assert AuditEvent.objects.get().action == "user.deactivate"


def test_the_admin_shows_events_but_refuses_to_add_change_or_delete_them(admin_browser, patient, staff, client_for):
    client_for(staff).post(f"/api/user/{patient.user_id}/deactivate")
    event = AuditEvent.objects.get()
    base = "/admin/records/auditevent/"

    listing = admin_browser.get(base)
    page = admin_browser.get(f"{base}{event.pk}/change/").content.decode()
    changed = admin_browser.post(f"{base}{event.pk}/change/", {"action": "user.reactivate", "target": "x"})
    deleted = admin_browser.post(f"{base}{event.pk}/delete/", {"post": "yes"})
    added = admin_browser.post(f"{base}add/", {"action": "forged", "target": "x"})
    bulk = admin_browser.post(base, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"})

    assert listing.status_code == 200 and "user.deactivate" in listing.content.decode()
    assert 'name="_save"' not in page and f"{base}{event.pk}/delete/" not in page
    assert changed.status_code == 403 and deleted.status_code == 403 and added.status_code == 403
    assert bulk.status_code in (200, 302)
    assert list(AuditEvent.objects.values_list("action", "target")) == [("user.deactivate", patient.user_id)]


def test_the_model_refuses_to_change_or_delete_events(staff, patient, client_for):
    client_for(staff).post(f"/api/user/{patient.user_id}/deactivate")
    event = AuditEvent.objects.get()

    event.action = "forged"
    for attempt in (event.save, event.delete, AuditEvent.objects.all().delete,
                    lambda: AuditEvent.objects.update(action="forged"),
                    lambda: AuditEvent.objects.bulk_update([event], ["action"])):
        with pytest.raises(AppendOnly), transaction.atomic():
            attempt()
    assert AuditEvent.objects.get().action == "user.deactivate"


def test_postgresql_refuses_raw_updates_and_deletes(staff, patient, client_for):
    if connection.vendor != "postgresql":
        pytest.skip("the trigger is PostgreSQL's")
    client_for(staff).post(f"/api/user/{patient.user_id}/deactivate")

    for sql in ("UPDATE audit_events SET action = 'forged'", "DELETE FROM audit_events"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert AuditEvent.objects.get().action == "user.deactivate"


# --- manage.py audit_export -------------------------------------------------------------------------------------


def test_audit_export_writes_json_lines_oldest_first(staff, patient, client_for, tmp_path):
    client = client_for(staff)
    client.post(f"/api/user/{patient.user_id}/deactivate")
    client.post(f"/api/user/{patient.user_id}/reactivate")
    out = tmp_path / "audit.jsonl"

    call_command("audit_export", "--output", str(out), "--target", patient.user_id)

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["action"], e["actor_id"]) for e in lines] == [("user.deactivate", staff.user_id),
                                                             ("user.reactivate", staff.user_id)]
    assert AuditEvent.objects.filter(action="audit.export").count() == 1  # the export itself is on the trail
