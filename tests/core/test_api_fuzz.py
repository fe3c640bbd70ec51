"""Schemathesis fuzzes every call of /api/schema in-process: never a 5xx, and every answer is the documented one.

The schema is loaded from the WSGI application and every generated case is sent to it with the Bearer token of a
staff user or of an in-group DOCTOR. Each operation starts from a seeded ward (members, messages, an answered AI
interaction) plus a group the doctor is not in; a share of the cases carry those real ids in their path, query
and body, so that many calls get past the lookups and the permission checks."""
import itertools

import hypothesis
import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.meta import CoveragePhaseData
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ai_bridge.models import AIInteractionRecord, Status
from chat.models import MsgType
from chat.services import message_send
from groups.models import ChatGroup, GroupMember
from groups.services import group_create, member_add
from tests.support.api import access_token
from users.models import Role
from users.services import user_create

MAX_EXAMPLES = 30  # generated cases per operation (each sent as both callers), besides the coverage cases
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

pytestmark = pytest.mark.django_db(transaction=True)

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())

# Per OpenAPI a concrete path is matched before a templated one: a `group_id` of "create" calls /api/group/create
# (POST only, so a GET answers 405), not /api/group/{group_id}. Such cases belong to the other operation.
FIXED_PATHS = {path.rstrip("/") for path in schema.raw_schema["paths"] if "{" not in path}


@schema.hook("filter_case")
def not_a_fixed_path(context, case):
    return "{" not in case.operation.path or case.formatted_path.rstrip("/") not in FIXED_PATHS


# The seeded ids of the running test, by parameter name; read while cases are drawn.
REAL_IDS: dict[str, list[str]] = {}
_turn = itertools.count()


def _seeded_or(name, value, *, in_path=False):
    """A seeded id or the generated value; in a path also the value with a NUL byte, which schemathesis itself
    keeps out of paths (strict proxies refuse it) but which Django hands to the view, and so to the database."""
    options = [st.sampled_from(REAL_IDS[name]), st.just(value)]
    if in_path and isinstance(value, str):
        options.append(st.just(f"{value}\x00"))
    return st.one_of(options)


@schema.hook("flatmap_case")
def with_real_ids(context, case):
    """Each id-like parameter keeps its generated value or takes one of the seeded ids."""
    draws = {}
    for where in ("path_parameters", "query"):
        for name, value in (getattr(case, where) or {}).items():
            if REAL_IDS.get(name):
                draws[(where, name)] = _seeded_or(name, value, in_path=where == "path_parameters")
    if isinstance(case.body, dict) and REAL_IDS:
        for name in ("group_id", "user_id"):
            if name in case.body:
                draws[("body", name)] = _seeded_or(name, case.body[name])
        members = case.body.get("members")
        if isinstance(members, list):
            for i, member in enumerate(members):
                if isinstance(member, dict) and "user_id" in member:
                    draws[("member", i)] = _seeded_or("user_id", member["user_id"])

    def apply(values):
        for (where, name), value in values.items():
            if where == "member":
                case.body["members"][name]["user_id"] = value
            elif where == "body":
                case.body[name] = value
            else:
                getattr(case, where)[name] = value
        return case

    return st.fixed_dictionaries(draws).map(apply)


def coverage_with_real_ids(case):
    """A coverage case (boundary values of one parameter) gets seeded ids in the id parameters it is not about.

    Coverage cases are built when the test is collected, before anything is seeded: they are aimed here."""
    data = case.meta.phase.data if case.meta is not None else None
    if not isinstance(data, CoveragePhaseData):
        return case

    def aim(container):
        for name in list(container):
            ids = REAL_IDS.get(name)
            if ids and name != data.parameter and name not in (data.description or ""):
                container[name] = ids[next(_turn) % len(ids)]

    aim(case.path_parameters or {})
    aim(case.query or {})
    if isinstance(case.body, dict):
        aim(case.body)
    return case


@pytest.fixture
def seeded(settings, ai_service):
    """The ward (doctor, patient, assistant), another group, messages and one answered AI interaction."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # logins are fuzzed too
    staff = user_create(username="fuzz_staff", user_role=Role.DOCTOR, is_staff=True)
    doctor = user_create(username="fuzz_doctor", user_role=Role.DOCTOR, password="fuzz-doctor-pass")
    patient = user_create(username="fuzz_patient", user_role=Role.PATIENT)
    assistant = user_create(username="fuzz_assistant", user_role=Role.AI_ASSISTANT)
    other_doctor = user_create(username="fuzz_other_doctor", user_role=Role.DOCTOR)
    loner = user_create(username="fuzz_loner", user_role=Role.PATIENT)
    # The AI is off while seeding, so nothing runs in the background; the record is written by hand.
    ward = group_create(creator=doctor, group_name="Fuzz ward", ai_enabled=False,
                        members=[(patient, Role.PATIENT), (assistant, Role.AI_ASSISTANT)])
    other = group_create(creator=other_doctor, group_name="Other ward", ai_enabled=False)
    hello, _ = message_send(sender=doctor, group=ward, content="Good morning", client_msg_id="fuzz-1")
    question, _ = message_send(sender=patient, group=ward, content="May I walk today?")
    reply, _ = message_send(sender=assistant, group=ward, content="Yes, gently.", msg_type=MsgType.AI_REPLY,
                            reply_to=question)
    elsewhere, _ = message_send(sender=other_doctor, group=other, content="Elsewhere")
    record = AIInteractionRecord.objects.create(group=ward, user_message=question, ai_message=reply,
                                                status=Status.SUCCESS, attempts=1, duration_ms=12,
                                                request_body={"message": question.content},
                                                response_body={"reply": reply.content})
    ChatGroup.objects.filter(pk=ward.pk).update(ai_mode="auto")
    REAL_IDS.update({
        "user_id": [u.user_id for u in (staff, doctor, patient, assistant, other_doctor, loner)],
        "group_id": [ward.group_id, other.group_id],
        "message_id": [m.message_id for m in (hello, question, reply, elsewhere)],
        "record_id": [record.record_id],
    })
    members = [(ward, m.user, m.user_role) for m in GroupMember.objects.filter(group=ward).select_related("user")]
    callers = {user.username: {"Authorization": f"Bearer {access_token(user)}"}
               for user in (staff, doctor)}
    yield {"callers": callers, "members": members}
    REAL_IDS.clear()


def _restore_members(seeded):
    """Put back the seeded members a fuzzed DELETE took out, so later cases still get past the checks."""
    for group, user, role in seeded["members"]:
        if not GroupMember.objects.filter(group=group, user=user).exists():
            member_add(group=group, user=user, user_role=role)


@schema.parametrize()
@hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_api_fuzz(case, seeded):
    """Each case is sent as the staff user, then as the ward's doctor."""
    case = coverage_with_real_ids(case)
    for caller, headers in seeded["callers"].items():
        try:
            case.call_and_validate(headers=headers, checks=CHECKS)
        except Exception as exc:
            exc.add_note(f"Sent as {caller}.")
            raise
        finally:
            if case.method.upper() == "DELETE":
                _restore_members(seeded)
