"""The Celery application; its settings are the CELERY_* names in imserver/settings.py."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imserver.settings")

app = Celery("imserver")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Request ids travel with tasks (Celery signals connected on import).
import imserver.observability  # noqa: E402,F401
