"""Writes made in the Django admin go through the services: seq, memberships, validated passwords."""
import pytest

from chat.models import Message
from chat.services import message_send
from groups.models import ChatGroup, GroupMember
from tests.support.api import counts
from users.models import User


def inline(rows, initial=0):
    """The members inline's form data: `rows` are dicts of user/user_role (and id, DELETE)."""
    data = {"memberships-TOTAL_FORMS": str(len(rows)), "memberships-INITIAL_FORMS": str(initial),
            "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000"}
    for i, row in enumerate(rows):
        data.update({f"memberships-{i}-{key}": value for key, value in row.items()})
    return data


def test_message_added_in_admin_gets_the_next_seq(admin_browser, care_group, doctor, patient):
    message_send(sender=doctor, group=care_group, content="first")
    message_send(sender=patient, group=care_group, content="second")

    response = admin_browser.post("/admin/chat/message/add/", {
        "group": care_group.pk, "sender": doctor.pk, "msg_type": "TEXT", "content": "  from the admin  "})

    assert response.status_code == 302, response.content.decode()[:2000]
    added = Message.objects.get(content="from the admin")  # trimmed by the service
    assert added.seq == 3 and added.from_role == "DOCTOR" and added.sender == doctor
    assert added.message_id.startswith("msg_")
    assert ChatGroup.objects.get(pk=care_group.pk).last_seq == 3


def test_message_added_in_admin_to_an_empty_group_is_seq_1(admin_browser, care_group, patient):
    admin_browser.post("/admin/chat/message/add/", {
        "group": care_group.pk, "sender": patient.pk, "msg_type": "TEXT", "content": "hi"})

    assert list(Message.objects.values_list("seq", "from_role")) == [(1, "PATIENT")]
    assert ChatGroup.objects.get(pk=care_group.pk).last_seq == 1


@pytest.mark.parametrize("who,msg_type,content", [
    ("outsider", "TEXT", "not a member"),
    ("assistant", "AI_REPLY", "only the AI bridge writes these"),
    ("patient", "IMAGE", "not a url"),
    ("patient", "TEXT", "   "),
])
def test_admin_refuses_a_message_the_service_would_refuse(admin_browser, care_group, request, who, msg_type,
                                                          content):
    sender = request.getfixturevalue(who)
    before = counts()

    response = admin_browser.post("/admin/chat/message/add/", {
        "group": care_group.pk, "sender": sender.pk, "msg_type": msg_type, "content": content})

    assert response.status_code == 200  # the form again, with the error
    assert "errornote" in response.content.decode() or "errorlist" in response.content.decode()
    assert counts() == before
    assert ChatGroup.objects.get(pk=care_group.pk).last_seq == 0


def test_messages_are_read_only_in_admin(admin_browser, care_group, doctor):
    message = message_send(sender=doctor, group=care_group, content="as sent")[0]
    change_url = f"/admin/chat/message/{message.pk}/change/"

    page = admin_browser.get(change_url).content.decode()
    posted = admin_browser.post(change_url, {"content": "rewritten", "sender": doctor.pk, "group": care_group.pk,
                                             "msg_type": "TEXT"})
    deleted = admin_browser.post(f"/admin/chat/message/{message.pk}/delete/", {"post": "yes"})
    bulk = admin_browser.post("/admin/chat/message/", {"action": "delete_selected",
                                                       "_selected_action": [message.pk], "post": "yes"})

    assert 'name="content"' not in page and 'name="_save"' not in page
    assert f"/admin/chat/message/{message.pk}/delete/" not in page
    assert posted.status_code == 403
    assert deleted.status_code == 403
    assert bulk.status_code in (200, 302)
    assert list(Message.objects.values_list("content", "seq")) == [("as sent", 1)]
    assert ChatGroup.objects.get(pk=care_group.pk).last_seq == 1


def test_group_added_in_admin_with_a_member_inline(admin_browser, superuser, patient, assistant):
    rows = [{"user": patient.pk, "user_role": "PATIENT"}, {"user": assistant.pk, "user_role": "AI_ASSISTANT"}]
    data = {"group_name": "Admin-made", "description": "via the admin", "ai_mode": "auto", **inline(rows)}

    response = admin_browser.post("/admin/groups/chatgroup/add/", data)

    assert response.status_code == 302, response.content.decode()[:3000]
    group = ChatGroup.objects.get(group_name="Admin-made")
    assert group.group_id.startswith("group_") and group.created_by == superuser and group.ai_enabled
    roles = dict(GroupMember.objects.filter(group=group).values_list("user__username", "user_role"))
    assert roles == {superuser.username: "DOCTOR", patient.username: "PATIENT", assistant.username: "AI_ASSISTANT"}


def test_group_changed_in_admin_switches_ai_and_removes_a_member(admin_browser, care_group, doctor, patient,
                                                                assistant):
    members = list(GroupMember.objects.filter(group=care_group).order_by("id"))
    rows = [{"id": m.pk, "user": m.user.pk, "user_role": m.user_role} for m in members]
    rows[1]["DELETE"] = "on"  # the patient
    data = {"group_name": "Ward 7b", "description": "", "ai_mode": "off", **inline(rows, initial=len(rows))}

    response = admin_browser.post(f"/admin/groups/chatgroup/{care_group.pk}/change/", data)

    assert response.status_code == 302, response.content.decode()[:3000]
    care_group.refresh_from_db()
    assert care_group.group_name == "Ward 7b" and care_group.ai_enabled is False
    assert set(GroupMember.objects.filter(group=care_group).values_list("user", flat=True)) == {doctor.pk,
                                                                                                assistant.pk}


@pytest.mark.usefixtures("fast_hasher")
def test_user_added_in_admin(admin_browser, client_for):
    response = admin_browser.post("/admin/users/user/add/", {
        "username": "nurse_li", "user_role": "PATIENT", "password": "a-sound-passphrase", "is_active": "on"})

    assert response.status_code == 302, response.content.decode()[:2000]
    user = User.objects.get(username="nurse_li")
    assert user.user_id.startswith("user_") and user.user_role == "PATIENT" and not user.is_staff
    login = client_for().post("/api/auth/token", {"username": "nurse_li", "password": "a-sound-passphrase"},
                              format="json")
    assert login.status_code == 200


@pytest.mark.usefixtures("fast_hasher")
def test_admin_refuses_a_weak_password_on_the_form(admin_browser):
    before = counts()

    response = admin_browser.post("/admin/users/user/add/", {
        "username": "nurse_li", "user_role": "PATIENT", "password": "123", "is_active": "on"})

    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert counts() == before


def test_user_role_changed_in_admin(admin_browser, patient):
    response = admin_browser.post(f"/admin/users/user/{patient.pk}/change/", {
        "user_role": "DOCTOR", "is_active": "on"})

    assert response.status_code == 302, response.content.decode()[:2000]
    patient.refresh_from_db()
    assert patient.user_role == "DOCTOR" and patient.is_active and not patient.is_staff


def test_duplicate_username_in_admin_is_a_form_error(admin_browser, patient):
    before = counts()

    response = admin_browser.post("/admin/users/user/add/", {
        "username": patient.username, "user_role": "DOCTOR", "is_active": "on"})

    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert counts() == before
