"""The WebSocket protocol as AsyncAPI 3 (/api/asyncapi.yaml): every frame type the server sends or accepts is in it,
with the contract's close codes, and frames captured from a real session validate against its schemas."""
import asyncio
import json
import re
import shutil
import subprocess
import tarfile

import jsonschema
import pytest
import yaml
from django.db import connections
from rest_framework_simplejwt.tokens import AccessToken

from chat.consumers import ChatConsumer
from groups.services import member_add, member_remove
from tests.support.live import ROOT, needs_real_services
from tests.support.wsclient import Client
from users.models import Role

# Where frames are built: their "type" values (channel-layer event types, with a dot, are not frames).
FRAME_SOURCES = ["chat/consumers.py", "chat/frames.py", "chat/realtime.py", "imserver/publish.py", "ai_bridge/posting.py",
                 "ai_bridge/escalation.py", "ai_bridge/review.py"]
CLOSE_CODES = {4401, 4403, 4429, 4008, 1012}


@pytest.fixture(scope="module")
def document(django_db_blocker):
    from django.test import Client as DjangoClient

    with django_db_blocker.unblock():
        response = DjangoClient().get("/api/asyncapi.yaml")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/yaml")
    return yaml.safe_load(response.content)


async def in_thread(func, **kwargs):
    """Run ORM code off the event loop, closing that thread's connections after."""
    def run():
        try:
            return func(**kwargs)
        finally:
            connections.close_all()

    return await asyncio.to_thread(run)


def frames_of(document, side: str) -> dict[str, dict]:
    """Frame type -> payload schema, for the frames one side sends."""
    found = {}
    for key, message in document["components"]["messages"].items():
        if key.startswith(f"{side}_"):
            name = message["payload"]["$ref"].rsplit("/", 1)[-1]
            found[message["name"]] = document["components"]["schemas"][name]
    return found


def validator(document, side: str, kind: str):
    name = next(m["payload"]["$ref"] for k, m in document["components"]["messages"].items()
                if k == f"{side}_{kind}")
    return jsonschema.Draft7Validator({"$ref": name, "components": document["components"]},
                                      format_checker=jsonschema.FormatChecker())


def test_document_is_asyncapi_3_with_the_connection_and_its_authentication(document):
    channel = document["channels"]["socket"]

    assert document["asyncapi"].startswith("3.")
    assert channel["address"] == "/ws/{user_id}" and "user_id" in channel["parameters"]
    assert channel["bindings"]["ws"]["query"]["properties"]["token"]["type"] == "string"
    schemes = document["components"]["securitySchemes"]
    assert (schemes["accessToken"]["in"], schemes["accessToken"]["name"]) == ("query", "token")
    assert schemes["sessionCookie"]["in"] == "cookie"


def test_every_frame_type_the_server_builds_is_documented(document):
    built = set()
    for source in FRAME_SOURCES:
        built |= set(re.findall(r'"type": "([a-z_]+)"', (ROOT / source).read_text()))
    built.discard("function")  # not a frame: none in these files, but the AI client's tool type looks alike
    push_types = {"message", "ai_reply"}  # chat/realtime.py sets these with a conditional, not a literal

    assert built | push_types <= set(frames_of(document, "server")), sorted(built - set(frames_of(document, "server")))


def test_every_client_frame_the_consumer_accepts_is_documented(document):
    assert set(ChatConsumer.handlers) == set(frames_of(document, "client"))


def test_every_ai_status_is_in_the_schema(document):
    sent = set(re.findall(r'status_push\(record, "([a-z]+)"\)', "".join(
        (ROOT / path).read_text() for path in ("ai_bridge/posting.py", "ai_bridge/escalation.py",
                                               "ai_bridge/review.py", "ai_bridge/tasks.py", "ai_bridge/services.py"))))
    assert sent and sent <= set(frames_of(document, "server")["ai_status"]["properties"]["status"]["enum"])


def test_close_codes_are_documented(document):
    channel = document["channels"]["socket"]
    codes = {entry["code"] for entry in channel["x-close-codes"]}

    assert codes == CLOSE_CODES
    assert all(str(code) in channel["description"] for code in CLOSE_CODES)
    assert all(entry["client"] for entry in channel["x-close-codes"])


def test_docs_link_to_the_asyncapi_document(client, db):
    info = client.get("/api/schema?format=json").json()["info"]

    assert "/api/asyncapi.yaml" in info["description"]


def test_document_validates_against_the_asyncapi_3_schema(document, tmp_path):
    """The official JSON Schema of AsyncAPI 3.0.0, from its npm package @asyncapi/specs."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the AsyncAPI meta-schema comes from @asyncapi/specs")
    packed = subprocess.run([npm, "pack", "@asyncapi/specs@6.11.1", "--silent"], check=False, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    if packed.returncode != 0:
        pytest.skip(f"npm pack @asyncapi/specs failed: {packed.stderr[-500:]}")
    with tarfile.open(tmp_path / packed.stdout.strip().splitlines()[-1]) as archive:
        meta = json.load(archive.extractfile("package/schemas/3.0.0.json"))

    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in jsonschema.Draft7Validator(meta).iter_errors(
        json.loads(json.dumps(document)))]
    assert errors == []


@needs_real_services()
@pytest.mark.django_db(transaction=True)
def test_frames_of_a_real_session_validate(document, start_server, care_group, doctor, patient, make_user):
    server = start_server()
    newcomer = make_user(Role.PATIENT)
    group_id = care_group.group_id
    sent: list[dict] = []

    async def scenario():
        dr = Client("doctor", doctor.user_id, str(AccessToken.for_user(doctor)))
        pt = Client("patient", patient.user_id, str(AccessToken.for_user(patient)))
        await dr.connect(server.ws_url)
        await pt.connect(server.ws_url)

        async def send(client, frame):
            sent.append(frame)
            await client.send(frame)

        await send(dr, {"type": "send_message", "group_id": group_id, "content": "Good morning",
                        "client_msg_id": "as-1"})
        await dr.wait_for(lambda f: f["type"] == "message_ack")
        await pt.wait_for(lambda f: f["type"] == "message")
        await send(pt, {"type": "sync", "group_id": group_id, "after_seq": 0})
        await pt.wait_for(lambda f: f["type"] == "sync_result")
        await send(pt, {"type": "ping"})
        await pt.wait_for(lambda f: f["type"] == "pong")
        await send(pt, {"type": "typing", "group_id": group_id})
        await dr.wait_for(lambda f: f["type"] == "typing")
        await send(pt, {"type": "read", "group_id": group_id, "seq": 1})
        await dr.wait_for(lambda f: f["type"] == "read_receipt")
        await send(pt, {"type": "sync", "group_id": "group_nosuchgroup", "after_seq": 0})
        await pt.send("not json")
        await pt.wait_for(lambda f: f["type"] == "error")
        await in_thread(member_add, group=care_group, user=newcomer, user_role=Role.PATIENT)
        await dr.wait_for(lambda f: f["type"] == "member_joined")
        await in_thread(member_remove, group=care_group, user=newcomer)
        await dr.wait_for(lambda f: f["type"] == "member_left")
        await dr.close()
        await pt.close()
        return dr.frames + pt.frames

    received = asyncio.run(scenario())

    kinds = {frame["type"] for frame in received}
    assert {"connected", "message", "message_ack", "sync_result", "pong", "typing", "read_receipt", "error",
            "member_joined", "member_left"} <= kinds
    server_frames = frames_of(document, "server")
    for frame in received:
        assert frame["type"] in server_frames
        problems = [e.message for e in validator(document, "server", frame["type"]).iter_errors(frame)]
        assert problems == [], f"{frame}: {problems}"
    for frame in sent:
        problems = [e.message for e in validator(document, "client", frame["type"]).iter_errors(frame)]
        assert problems == [], f"{frame}: {problems}"
