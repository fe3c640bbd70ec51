"""Liveness and readiness: readiness names the part that fails, and shows each database replica with its lag."""
import asyncio

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from imserver import dbrouter


@require_GET
def health(request):
    return JsonResponse({"status": "ok"})


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


async def _layer_roundtrip(layer) -> None:
    channel = await layer.new_channel("health.")
    await layer.send(channel, {"type": "health.check"})
    await layer.receive(channel)


def _check_channel_layer() -> str:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")

    async def roundtrip():
        await asyncio.wait_for(_layer_roundtrip(layer), timeout=settings.HEALTH_CHECK_TIMEOUT)

    async_to_sync(roundtrip)()
    return "ok"


def _check_broker() -> str:
    if settings.AI_TASKS_IN_PROCESS:
        return "ok (in-process)"
    from imserver.celery import app  # Celery's app loaded only where a broker is checked, not in every process

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=settings.HEALTH_CHECK_TIMEOUT)
    return "ok"


CHECKS = {"database": _check_database, "channel_layer": _check_channel_layer, "task_broker": _check_broker}


@require_GET
def ready(request):
    checks, healthy = {}, True
    for name, check in CHECKS.items():
        try:
            checks[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure makes the part not ready
            healthy = False
            checks[name] = f"failed: {exc.__class__.__name__}"
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    if not healthy:
        body["failing"] = [name for name, value in checks.items() if value.startswith("failed")]
    if settings.DATABASE_REPLICA_URLS:
        # Shown, not judged: while replicas are away or behind, the primary serves their reads.
        body["replicas"] = dbrouter.replica_report()
    return JsonResponse(body, status=200 if healthy else 503)
