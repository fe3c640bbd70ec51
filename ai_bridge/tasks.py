"""The AI bridge's tasks: fetch by id, call the services; retries and their policy live here."""
import logging
import random
import time

from celery import shared_task
from django.conf import settings
from django.db import connection

from ai_bridge import client, escalation, posting, services
from ai_bridge.models import AIInteractionRecord, Status
from imserver.metrics import AI_REPLY_STORED
from imserver.patches import CompiledRead

logger = logging.getLogger(__name__)
# What an attempt reads first: the record with its group, message and sender (compiled once: README, Performance).
_RECORD = CompiledRead(lambda record_id: AIInteractionRecord.objects.select_related("group", "user_message__sender")
                       .filter(record_id=record_id)[:1], record_id="~record_id~")


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: up to AI_RETRY_BACKOFF * 2**(attempt-1), capped."""
    ceiling = min(settings.AI_RETRY_BACKOFF_MAX, settings.AI_RETRY_BACKOFF * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def step(record_id: str) -> float | None:
    """One attempt; the seconds to wait before the next one, or None when there is nothing more to do."""
    record = _RECORD.first(record_id=record_id)
    if record is None or record.status != Status.PROCESSING:
        return None
    if record.attempts >= settings.AI_MAX_ATTEMPTS_TOTAL:
        services.ai_record_fail(record=record, reason=f"called {record.attempts} times; no more attempts")
        return None
    if record.attempts == 0:
        started = services.ai_record_start(record=record)
        if not isinstance(started, dict):
            return started  # seconds until its burst may have ended, or None
        body = started
    else:
        body = services.ai_attempt_retry(record=record)
        if body is None:
            return None
    relay = posting.DeltaRelay(record)
    # The call may take up to AI_SERVICE_TIMEOUT: its database connection goes back to the pool meanwhile, so
    # slow AI answers never hold the connections the IM core needs (nor cap the worker at the pool's size).
    if not connection.in_atomic_block:
        connection.close()
    try:
        answer = client.ai_call(body, on_delta=relay)  # its last piece leaves with the answer
    except client.StreamStopped as stop:  # a doctor took over while the answer was being written
        posting.ai_record_suppress(record=record, reason=stop.reason)
        return None
    except client.AIError as exc:
        if exc.retriable and record.attempts <= settings.AI_MAX_RETRIES:
            logger.info("AI record %s attempt %s failed (%s); retrying", record_id, record.attempts, exc.reason)
            return exc.retry_after if exc.retry_after is not None else backoff(record.attempts)
        reason = exc.reason if not exc.retriable else f"{exc.reason}; gave up after {record.attempts} attempts"
        services.ai_record_fail(record=record, reason=reason, response_body=exc.body)
        return None
    try:
        if services.ai_answer_handle(record=record, answer=answer, relay=relay) is not None:
            AI_REPLY_STORED.labels(settings.AI_SERVICE_PROTOCOL).observe(time.monotonic() - relay.started)
    except Exception as exc:  # noqa: BLE001 - whatever happens after the call, the record never stays PROCESSING
        logger.exception("AI record %s: the answer could not be handled", record_id)
        services.ai_record_fail(record=record, reason=f"the answer could not be handled: {exc}",
                                response_body=answer.response_body)
    return None


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def ai_reply_generate(self, record_id: str):
    """Answer one forwarded patient message (idempotent: a redelivered task posts nothing twice)."""
    delay = step(record_id)
    if delay is not None:
        raise self.retry(countdown=delay)


@shared_task
def ai_records_sweep() -> int:
    """Periodic: dispatch again the records left PROCESSING too long; escalate drafts nobody reviewed."""
    return services.ai_records_redispatch_stale()


@shared_task(bind=True, acks_late=True, max_retries=None)
def escalation_deliver(self, delivery_id: int):
    """POST one escalation to the webhook, with retries and backoff until it is delivered or given up."""
    delivered = escalation.escalation_deliver_once(delivery_id=delivery_id)
    if delivered is False:
        raise self.retry(countdown=backoff(self.request.retries + 1))


def run_in_process(record_id: str) -> None:
    """The embedded system's worker: the same steps in a background thread, sleeping between retries."""
    try:
        while (delay := step(record_id)) is not None:
            time.sleep(delay)
    except Exception:  # noqa: BLE001 - a background thread has nobody else to tell
        logger.exception("AI record %s failed in-process", record_id)
    finally:
        connection.close()


def escalation_deliver_in_process(delivery_id: int) -> None:
    """The embedded system's webhook delivery, retried with backoff in a background thread."""
    try:
        attempt = 0
        while escalation.escalation_deliver_once(delivery_id=delivery_id) is False:
            attempt += 1
            time.sleep(backoff(attempt))
    except Exception:  # noqa: BLE001
        logger.exception("escalation delivery %s failed in-process", delivery_id)
    finally:
        connection.close()
