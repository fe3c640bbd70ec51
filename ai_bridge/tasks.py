"""The AI reply task: fetch the record, call the service, post through the services; retries live here."""
import logging
import random
import time

from celery import shared_task
from django.conf import settings
from django.db import connection

from ai_bridge import client, services
from ai_bridge.models import AIInteractionRecord, Status
from imserver.errors import ServiceError

logger = logging.getLogger(__name__)


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: up to AI_RETRY_BACKOFF * 2**(attempt-1), capped."""
    ceiling = min(settings.AI_RETRY_BACKOFF_MAX, settings.AI_RETRY_BACKOFF * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def step(record_id: str) -> float | None:
    """One attempt; the seconds to wait before the next one, or None when the record is settled."""
    record = (AIInteractionRecord.objects.select_related("group", "user_message__sender")
              .filter(record_id=record_id).first())
    if record is None or record.status != Status.PROCESSING:
        return None
    if not record.group.ai_enabled:
        services.ai_record_fail(record=record, reason="The AI was switched off in this group.", notify=False)
        return None
    body = services.ai_attempt_begin(record=record)
    # The call may take up to AI_SERVICE_TIMEOUT: its database connection goes back to the pool meanwhile, so
    # slow AI answers never hold the connections the IM core needs (nor cap the worker at the pool's size).
    if not connection.in_atomic_block:
        connection.close()
    try:
        answer = client.ai_call(body)
    except client.AIError as exc:
        if exc.retriable and record.attempts <= settings.AI_MAX_RETRIES:
            logger.info("AI record %s attempt %s failed (%s); retrying", record_id, record.attempts, exc.reason)
            return backoff(record.attempts)
        reason = exc.reason if not exc.retriable else f"{exc.reason}; gave up after {record.attempts} attempts"
        services.ai_record_fail(record=record, reason=reason, response_body=exc.body)
        return None
    try:
        services.ai_reply_post(record=record, answer=answer)
    except ServiceError as exc:  # e.g. a reply with nothing storable in it
        services.ai_record_fail(record=record, reason=f"reply refused: {exc.message}", response_body=answer.response_body)
    return None


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def ai_reply_generate(self, record_id: str):
    """Answer one forwarded patient message (idempotent: a redelivered task posts nothing twice)."""
    delay = step(record_id)
    if delay is not None:
        raise self.retry(countdown=delay)


@shared_task
def ai_records_sweep() -> int:
    """Periodic: dispatch again the records left PROCESSING too long."""
    return services.ai_records_redispatch_stale()


def run_in_process(record_id: str) -> None:
    """The embedded system's worker: the same steps in a background thread, sleeping between retries."""
    try:
        while (delay := step(record_id)) is not None:
            time.sleep(delay)
    except Exception:  # noqa: BLE001 - a background thread has nobody else to tell
        logger.exception("AI record %s failed in-process", record_id)
    finally:
        connection.close()
