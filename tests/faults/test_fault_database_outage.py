"""PostgreSQL unreachable for a few seconds: sends answer 503 (never 500, never a false 201), then resume alone."""
import asyncio
import socket
import threading
import time

import httpx
import pytest
from django.db import connection
from django.test import Client as DjangoClient

from chat.models import Message
from groups.services import group_create, member_add
from tests.support.api import access_token
from tests.support.live import assert_all_received, assert_stored_once, free_port, needs_real_services
from tests.support.wsclient import Client
from users.models import Role

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]

OUTAGE = 3.0  # seconds


class Proxy:
    """A TCP proxy in front of PostgreSQL that can be cut (every connection closed, new ones refused) and restored."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream, self.port = upstream, free_port()
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.listener: socket.socket | None = None
        self.accepted = 0
        self.restore()

    def restore(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self):
        with self.lock:
            listener, self.listener = self.listener, None
            doomed, self.sockets = self.sockets, set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        for sock in doomed:
            _shut(sock)

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                if self.listener is not listener:  # cut while this one was being connected
                    _shut(client), _shut(server)
                    continue
                self.sockets |= {client, server}
                self.accepted += 1
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shut(src), _shut(dst)
            with self.lock:
                self.sockets -= {src, dst}

    def close(self):
        if self.listener is not None:
            self.cut()


def _shut(sock: socket.socket):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture
def pg_proxy():
    conf = connection.settings_dict
    proxy = Proxy((conf["HOST"] or "127.0.0.1", int(conf["PORT"] or 5432)))
    auth = conf["USER"] + (f":{conf['PASSWORD']}" if conf["PASSWORD"] else "")
    proxy.database_url = f"postgres://{auth}@127.0.0.1:{proxy.port}/{conf['NAME']}"
    yield proxy
    proxy.close()


def test_a_database_outage_answers_503_and_service_resumes_by_itself(pg_proxy, start_server, make_user):
    doctor, li, wang = make_user(Role.DOCTOR, is_staff=True), make_user(Role.PATIENT), make_user(Role.PATIENT)
    group = group_create(creator=doctor, group_name="DB outage")
    member_add(group=group, user=li, user_role=Role.PATIENT)
    member_add(group=group, user=wang, user_role=Role.PATIENT)
    browser = DjangoClient()
    browser.force_login(doctor)
    session = {"Cookie": f"sessionid={browser.cookies['sessionid'].value}"}  # the admin, in a browser
    server = start_server(DATABASE_URL=pg_proxy.database_url, IM_SEND_RATE="10000/min")
    headers = {"Authorization": f"Bearer {access_token(doctor)}"}
    told: list[dict] = []
    refused: list[dict] = []  # the bodies sent while the database was away

    async def scenario():
        clients = [Client("doctor", doctor.user_id, headers["Authorization"][7:]),
                   Client("li", li.user_id, access_token(li)),
                   Client("wang", wang.user_id, access_token(wang))]
        for client in clients:
            await client.connect(server.ws_url)
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as http:

            async def send(body: dict) -> httpx.Response:
                return await http.post("/api/message/send", json={"group_id": group.group_id, **body})

            for i in range(10):
                r = await send({"content": f"before {i}", "client_msg_id": f"before-{i}"})
                assert r.status_code == 201, r.text
                told.append(r.json())
            assert (await http.get("/health/ready")).status_code == 200

            pg_proxy.cut()
            cut_at = time.monotonic()
            # Over the WebSocket as well: an error frame naming the send, and the connection stays open.
            li_ws = clients[1]
            await li_ws.send({"type": "send_message", "group_id": group.group_id, "content": "li while down",
                              "client_msg_id": "li-1"})
            error = await li_ws.wait_for(lambda f: f["type"] in ("error", "message_ack"))
            assert error == {"type": "error", "code": "SERVICE_UNAVAILABLE", "message": error["message"],
                             "client_msg_id": "li-1"}
            while time.monotonic() - cut_at < OUTAGE:
                body = {"content": f"during {len(refused)}", "client_msg_id": f"during-{len(refused)}"}
                r = await send(body)
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "SERVICE_UNAVAILABLE", r.text
                assert "Traceback" not in r.text
                refused.append(body)
                ready = await http.get("/health/ready")
                assert ready.status_code == 503, ready.text
                assert ready.json()["failing"] == ["database"], ready.text
                # Outside DRF too (the admin, through the session cookie): the contract's 503, not a 500.
                admin = await http.get("/admin/", headers=session)
                assert admin.status_code == 503, admin.text[:300]
                assert admin.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
                await asyncio.sleep(0.1)
            pg_proxy.restore()

            # No restart: the very next send is stored again, and every one after it.
            for i in range(10):
                r = await send({"content": f"after {i}", "client_msg_id": f"after-{i}"})
                assert r.status_code == 201, r.text
                told.append(r.json())
            assert (await http.get("/health/ready")).status_code == 200
            assert (await http.get("/admin/", headers=session)).status_code == 200
            # What was refused was not stored: sending it again with its client_msg_id stores it now (201, not 200).
            history = await http.get("/api/message/list", params={"group_id": group.group_id, "after_seq": 0,
                                                                  "limit": 500})
            assert [m["content"] for m in history.json()["messages"]] == [m["content"] for m in told]
            for body in refused:
                r = await send(body)
                assert r.status_code == 201, r.text
                told.append(r.json())
            mark = len(li_ws.frames)
            await li_ws.send({"type": "send_message", "group_id": group.group_id, "content": "li while down",
                              "client_msg_id": "li-1"})
            ack = await li_ws.wait_for(lambda f: f["type"] in ("error", "message_ack"), start=mark)
            assert ack["type"] == "message_ack", ack
            told.append(ack["message"])

            for client in clients:
                await client.wait_for(lambda f: f["type"] == "message" and f["seq"] == told[-1]["seq"])
                assert not client.closed.is_set(), f"{client.name} lost its connection"
        await assert_all_received(clients, told)
        for client in clients:
            await client.close()

    asyncio.run(scenario())
    assert len(refused) >= 3
    assert_stored_once(told)
    assert Message.objects.filter(group=group).count() == len(told)
    assert [m["seq"] for m in told] == list(range(1, len(told) + 1))
