"""`manage.py demo_setup` creates the demo once; running it again creates nothing and says so."""
from io import StringIO

import pytest
from django.core.management import call_command

from groups.models import ChatGroup, GroupMember
from groups.services import member_remove
from tests.support.api import counts
from users.models import User

pytestmark = pytest.mark.usefixtures("fast_hasher")


def run(*args) -> str:
    out = StringIO()
    call_command("demo_setup", *args, stdout=out)
    return out.getvalue()


def test_first_run_creates_the_demo_users_group_and_members(db):
    output = run()

    assert "Created: dr_chen, patient_li, patient_wang, ai_assistant, admin, Demo care team" in output
    group = ChatGroup.objects.get(group_name="Demo care team")
    roles = dict(GroupMember.objects.filter(group=group).values_list("user__username", "user_role"))
    assert roles == {"dr_chen": "DOCTOR", "patient_li": "PATIENT", "patient_wang": "PATIENT",
                     "ai_assistant": "AI_ASSISTANT"}
    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    assert group.group_id in output


def test_second_run_creates_nothing_and_says_nothing(db):
    run()
    after_first = counts()

    output = run()

    assert counts() == after_first
    assert "Created: nothing" in output
    assert after_first["users"] == 5 and after_first["groups"] == 1 and after_first["members"] == 4


def test_second_run_restores_a_missing_membership_only(db):
    run()
    member_remove(group=ChatGroup.objects.get(group_name="Demo care team"),
                  user=User.objects.get(username="patient_wang"))

    run("--quiet")

    assert GroupMember.objects.filter(user__username="patient_wang", user_role="PATIENT").count() == 1
    assert counts()["members"] == 4 and counts()["users"] == 5


def test_quiet_run_prints_nothing(db):
    assert run("--quiet") == ""
    assert counts()["users"] == 5


def test_printed_tokens_work_on_the_api(db, client_for):
    output = run("--base-url", "http://example.test:9000")
    token = next(line.split("token:", 1)[1].strip() for line in output.splitlines() if "token:" in line)

    response = client_for().get("/api/user/me", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 200 and response.json()["username"] == "dr_chen"
    assert "http://example.test:9000/api/message/send" in output


def test_demo_passwords_log_in(db, client_for):
    run("--quiet")

    login = client_for().post("/api/auth/token", {"username": "patient_li", "password": "patient-demo-pass"},
                              format="json")

    assert login.status_code == 200 and login.json()["user"]["user_role"] == "PATIENT"
