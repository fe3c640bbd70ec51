"""The Celery application; its settings are the CELERY_* names in imserver/settings.py."""
import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imserver.settings")

app = Celery("imserver")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Request ids travel with tasks (Celery signals connected on import).
import imserver.observability  # noqa: E402,F401


@worker_init.connect
def _publish_from_own_loop(**kwargs):
    """A worker's pushes (AI replies, AI status) share one event loop and its Redis connections."""
    from chat import realtime

    realtime.publish_from_own_loop()
