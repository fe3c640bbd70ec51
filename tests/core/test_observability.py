"""Metrics an operator scrapes, and request ids that follow a message into the AI task's logs."""
import logging
import re

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from ai_bridge.models import AIInteractionRecord, Status
from chat.services import message_send
from tests.support.api import LogCollector, assert_error
from tests.support.waiting import wait_for
from tests.support.ws import connected, receive, run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_channel_layer")]


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        have = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if all(part in have.split(",") for part in want.split(",") if part):
            return float(match.group(3))
    return 0.0


def scrape(client_for, staff) -> str:
    answer = client_for(staff).get("/metrics")
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/plain")
    return answer.content.decode()


def test_metrics_need_staff_or_the_metrics_token(db, client_for, doctor, settings):
    assert_error(client_for().get("/metrics"), 401, "NOT_AUTHENTICATED")
    bad_token = client_for()
    bad_token.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")
    assert_error(bad_token.get("/metrics"), 401, "NOT_AUTHENTICATED")
    # Known, but not staff: refused as such, not asked to log in again.
    assert_error(client_for(doctor).get("/metrics"), 403, "PERMISSION_DENIED")
    browser = Client()
    browser.force_login(doctor)
    assert_error(browser.get("/metrics"), 403, "PERMISSION_DENIED")
    settings.METRICS_TOKEN = "scrape-secret"
    scraper = client_for()
    scraper.credentials(HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert scraper.get("/metrics").status_code == 200


def test_sends_and_request_latency_are_counted_by_transport_and_route(care_group, doctor, staff, client_for):
    before = scrape(client_for, staff)
    sent = client_for(doctor).post("/api/message/send", {"group_id": care_group.group_id, "content": "hi"},
                                   format="json")
    assert sent.status_code == 201
    after = scrape(client_for, staff)
    assert metric(after, "im_messages_sent_total", transport="http", msg_type="TEXT") == \
        metric(before, "im_messages_sent_total", transport="http", msg_type="TEXT") + 1
    routes = re.findall(r'im_http_request_duration_seconds_count\{[^}]*route="([^"]*message/send[^"]*)"[^}]*'
                        r'status="201"', after)
    assert routes, "the send's route and status are labelled"


def test_websocket_connections_and_push_latency(quiet_group, doctor, staff, client_for):
    before = scrape(client_for, staff)

    async def scenario():
        async with connected(doctor) as ws:
            open_now = await sync_to_async(scrape)(client_for, staff)
            await ws.send_json_to({"type": "send_message", "group_id": quiet_group.group_id, "content": "x"})
            frames = [await receive(ws), await receive(ws)]
            return open_now, frames

    open_now, frames = run(scenario)
    assert {f["type"] for f in frames} == {"message_ack", "message"}
    assert metric(open_now, "im_websocket_connections_open") == metric(before, "im_websocket_connections_open") + 1
    after = scrape(client_for, staff)
    assert metric(after, "im_websocket_connections_open") == metric(before, "im_websocket_connections_open")
    assert metric(after, "im_push_fanout_seconds_count") >= metric(before, "im_push_fanout_seconds_count") + 1
    assert metric(after, "im_messages_sent_total", transport="websocket", msg_type="TEXT") >= 1


def test_ai_calls_and_records_in_processing_are_reported(ai_service, care_group, patient, staff, client_for):
    before = scrape(client_for, staff)
    message_send(sender=patient, group=care_group, content="metrics please")
    wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.SUCCESS).exists())
    after = scrape(client_for, staff)
    assert metric(after, "im_ai_call_duration_seconds_count", outcome="success") == \
        metric(before, "im_ai_call_duration_seconds_count", outcome="success") + 1
    assert metric(after, "im_ai_records_processing") == 0
    assert metric(after, "im_messages_sent_total", transport="ai", msg_type="AI_REPLY") >= 1


def test_the_request_id_follows_a_message_into_the_ai_task(ai_service, care_group, patient, client_for, settings):
    settings.AI_MAX_RETRIES = 1
    ai_service.error_rate = 1.0  # so that the task logs its retry
    handler = LogCollector()
    logging.getLogger("ai_bridge.tasks").addHandler(handler)
    try:
        sent = client_for(patient).post("/api/message/send", {"group_id": care_group.group_id, "content": "trace me"},
                                        format="json", HTTP_X_REQUEST_ID="req-trace-42")
        assert sent.status_code == 201 and sent["X-Request-ID"] == "req-trace-42"
        wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.FAILED).exists())
    finally:
        logging.getLogger("ai_bridge.tasks").removeHandler(handler)
    assert handler.records and {r.request_id for r in handler.records} == {"req-trace-42"}
    assert all("trace me" not in r.getMessage() for r in handler.records)
    fresh = client_for(patient).get("/api/user/me")
    assert re.fullmatch(r"[0-9a-f]{16}", fresh["X-Request-ID"])
