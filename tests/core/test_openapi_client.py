"""/api/schema generates a good client: openapi-python-client's client of it runs the design documents' flow
(create user, create group, add member, send, list, catch-up) against a live server, with named functions, enums,
the two shapes of the message list and the contract's errors."""
import importlib
import shutil
import subprocess
import sys

import httpx
import pytest
from rest_framework_simplejwt.tokens import AccessToken

from tests.support.live import ROOT, needs_real_services

OPERATIONS = {
    ("post", "/api/user/create"): "user_create", ("get", "/api/user/me"): "user_me",
    ("get", "/api/user/{user_id}"): "user_get", ("post", "/api/group/create"): "group_create",
    ("get", "/api/group/"): "group_list", ("get", "/api/group/{group_id}"): "group_get",
    ("patch", "/api/group/{group_id}"): "group_update", ("post", "/api/group/{group_id}/members"): "member_add",
    ("get", "/api/group/{group_id}/members"): "member_list",
    ("delete", "/api/group/{group_id}/members/{user_id}"): "member_remove",
    ("post", "/api/message/send"): "message_send", ("get", "/api/message/list"): "message_list",
    ("get", "/api/message/{message_id}"): "message_get", ("post", "/api/auth/token"): "auth_token_obtain",
}


def operation(schema, method, path):
    return schema["paths"][path][method]


@pytest.mark.parametrize("method,path", list(OPERATIONS), ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_ids_name_what_they_do(schema, method, path):
    assert operation(schema, method, path)["operationId"] == OPERATIONS[(method, path)]


def test_operation_ids_are_unique_and_plain(schema):
    ids = [op["operationId"] for item in schema["paths"].values() for op in item.values() if "operationId" in op]
    assert len(ids) == len(set(ids))
    assert not [i for i in ids if i.startswith("api_") or i.endswith(("_create_create", "_retrieve"))]


def test_errors_are_those_the_operation_can_answer(schema):
    codes = {path_method: set(operation(schema, *path_method)["responses"]) for path_method in OPERATIONS}

    assert codes[("get", "/api/user/me")] == {"200", "401", "503"}
    assert {"409", "413", "429"}.isdisjoint(codes[("get", "/api/message/{message_id}")])
    assert {"403", "404", "413", "429"} <= codes[("post", "/api/message/send")]
    assert "409" in codes[("post", "/api/group/{group_id}/members")]
    assert {"401", "429"} <= codes[("post", "/api/auth/token")]  # a wrong password; the login rate


def test_roles_statuses_and_modes_are_enums(schema):
    components = schema["components"]["schemas"]
    role = {"$ref": "#/components/schemas/RoleEnum"}

    assert components["RoleEnum"]["enum"] == ["PATIENT", "DOCTOR", "AI_ASSISTANT"]
    assert role in components["Message"]["properties"]["from_role"].get("allOf", [])
    assert set(components["AiModeEnum"]["enum"]) == {"auto", "review", "off"}
    assert {"PROCESSING", "SUCCESS", "FAILED", "ESCALATED"} <= set(components["AiRecordStatusEnum"]["enum"])
    assert set(components["MsgTypeEnum"]["enum"]) == {"TEXT", "IMAGE", "AI_REPLY", "SYSTEM"}


def test_message_list_is_one_of_its_two_shapes(schema):
    answer = operation(schema, "get", "/api/message/list")["responses"]["200"]["content"]["application/json"]
    shapes = schema["components"]["schemas"][answer["schema"]["$ref"].rsplit("/", 1)[-1]]["oneOf"]
    required = [set(schema["components"]["schemas"][s["$ref"].rsplit("/", 1)[-1]]["required"]) for s in shapes]

    assert {"messages", "total", "page", "page_size"} in required and {"messages", "has_more"} in required


def test_every_request_body_has_an_example(schema):
    missing = [f"{method} {path}" for path, item in schema["paths"].items() for method, op in item.items()
               if "requestBody" in op and not op["requestBody"]["content"]["application/json"].get("examples")]
    assert missing == []


def generate_client(schema_url: str, out_dir):
    """openapi-python-client's client of the live schema, imported as `imclient_api`."""
    generator = shutil.which("openapi-python-client", path=str(ROOT / ".venv/bin")) or \
        shutil.which("openapi-python-client")
    if generator is None:
        pytest.fail("openapi-python-client is not installed: it is pinned in requirements.txt (make install)")
    (out_dir / "schema.json").write_text(httpx.get(schema_url, timeout=10).text)
    # No post hooks: the code as generated (its ruff hook would lint it with whatever ruff is on PATH).
    (out_dir / "config.yaml").write_text("post_hooks: []\n")
    done = subprocess.run([generator, "generate", "--path", str(out_dir / "schema.json"), "--meta", "none",
                           "--config", str(out_dir / "config.yaml"), "--output-path", str(out_dir / "imclient_api")],
                          check=False, cwd=out_dir,
                          capture_output=True, text=True, timeout=180,
                          env={"PATH": f"{ROOT / '.venv/bin'}:/usr/bin:/bin"})
    assert done.returncode == 0 and "Warning" not in done.stdout, done.stdout + done.stderr
    sys.path.insert(0, str(out_dir))
    try:
        return importlib.import_module("imclient_api")
    finally:
        sys.path.remove(str(out_dir))


@needs_real_services()
@pytest.mark.django_db(transaction=True)
def test_generated_client_runs_the_design_flow(start_server, staff, doctor, outsider, tmp_path):
    server = start_server()
    generate_client(f"{server.url}/api/schema?format=json", tmp_path)
    from imclient_api import AuthenticatedClient
    from imclient_api.api.groups import group_create, member_add
    from imclient_api.api.messages import message_get, message_list, message_send
    from imclient_api.api.users import user_create, user_me
    from imclient_api.models import (
        Error,
        GroupCreateRequest,
        MemberInRequest,
        MessageCatchUp,
        MessagePage,
        RoleEnum,
        SendRequest,
        UserCreateRequest,
    )

    def as_user(user):
        return AuthenticatedClient(base_url=server.url, token=str(AccessToken.for_user(user)))

    admin, dr = as_user(staff), as_user(doctor)
    try:
        created = user_create.sync_detailed(client=admin, body=UserCreateRequest(username="zhang_san",
                                                                                user_role=RoleEnum.PATIENT))
        assert created.status_code == 201 and created.parsed.user_role is RoleEnum.PATIENT
        patient_id = created.parsed.user_id
        assert user_me.sync(client=dr).user_id == doctor.user_id

        group = group_create.sync_detailed(client=dr, body=GroupCreateRequest(group_name="Cardiology follow-up"))
        assert group.status_code == 201 and group.parsed.member_count == 1
        group_id = group.parsed.group_id

        member = member_add.sync_detailed(group_id, client=dr, body=MemberInRequest(user_id=patient_id,
                                                                                    user_role=RoleEnum.PATIENT))
        assert member.status_code == 201 and member.parsed.user_role is RoleEnum.PATIENT
        again = member_add.sync_detailed(group_id, client=dr, body=MemberInRequest(user_id=patient_id,
                                                                                   user_role=RoleEnum.PATIENT))
        assert again.status_code == 409 and isinstance(again.parsed, Error)
        assert again.parsed.error.code == "ALREADY_MEMBER"

        body = SendRequest(group_id=group_id, content="How are you feeling today?", client_msg_id="dr-0001")
        sent = message_send.sync_detailed(client=dr, body=body)
        assert sent.status_code == 201 and (sent.parsed.seq, sent.parsed.from_role) == (1, RoleEnum.DOCTOR)
        repeat = message_send.sync_detailed(client=dr, body=body)
        assert repeat.status_code == 200 and repeat.parsed.message_id == sent.parsed.message_id

        page = message_list.sync(client=dr, group_id=group_id, page=1, page_size=20)
        assert isinstance(page, MessagePage) and (page.total, page.page, page.page_size) == (1, 1, 20)
        assert [m.message_id for m in page.messages] == [sent.parsed.message_id]
        catch_up = message_list.sync(client=dr, group_id=group_id, after_seq=0, limit=100)
        assert isinstance(catch_up, MessageCatchUp) and catch_up.has_more is False
        assert [m.seq for m in catch_up.messages] == [1]

        refused = message_get.sync_detailed(sent.parsed.message_id, client=as_user(outsider))
        assert refused.status_code == 403 and refused.parsed.error.code == "NOT_GROUP_MEMBER"
    finally:
        for name in [m for m in sys.modules if m == "imclient_api" or m.startswith("imclient_api.")]:
            del sys.modules[name]
