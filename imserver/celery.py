"""The Celery application; its settings are the CELERY_* names in imserver/settings.py."""
import logging
import os

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_init, worker_shutdown
from kombu.transport import TRANSPORT_ALIASES

from imserver import publish
from imserver.requestid import new_request_id, request_id_var

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imserver.settings")
# The broker's URL schemes name kombu's Redis transports with one client per channel (imserver.patches).
TRANSPORT_ALIASES.update({"redis": "imserver.patches:SharedClientRedisTransport",
                          "rediss": "imserver.patches:SharedClientRedisTransport",
                          "sentinel": "imserver.patches:SharedClientSentinelTransport"})

logger = logging.getLogger(__name__)

app = Celery("imserver")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Request ids travel with tasks: the publisher puts its own in the headers, the worker runs the task under it.
@before_task_publish.connect(dispatch_uid="imserver.request_id_out")
def _request_id_out(headers=None, **kwargs):
    if headers is not None:
        headers["request_id"] = request_id_var.get()


_task_tokens = {}


@task_prerun.connect(dispatch_uid="imserver.request_id_in")
def _request_id_in(task_id=None, task=None, **kwargs):
    _task_tokens[task_id] = request_id_var.set(getattr(task.request, "request_id", None) or new_request_id())


@task_postrun.connect(dispatch_uid="imserver.request_id_done")
def _request_id_done(task_id=None, **kwargs):
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        request_id_var.reset(token)


@worker_init.connect
def _publish_from_own_loop(**kwargs):
    """A worker's pushes (AI replies, AI status) share one event loop and its Redis connections."""
    publish.publish_from_own_loop()


@worker_shutdown.connect
def _pushes_sent(**kwargs):
    """The last tasks' pushes leave before the worker does (its pushes are not waited for as they are made)."""
    from django.conf import settings

    unsent = publish.pushes_drain(timeout=settings.REDIS_SOCKET_TIMEOUT * 2)
    if unsent:
        logger.warning("%s pushes were still unsent at shutdown", unsent)
