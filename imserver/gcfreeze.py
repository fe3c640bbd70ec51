"""What a server process loaded at start, left out of the garbage collector's full passes (GC_FREEZE). Those stop
the event loop and every thread while they walk all live objects: all of Django, the apps and the libraries
(about 140,000 objects), 60-100 ms every 20 s or so under load, and every push and answer in flight waits that
long. Frozen, a full pass walks only what came after the start.

Celery workers do not freeze: in the `ai` benchmark it did not measurably move the IM overhead, whose cost is the
AI task's queries."""
import gc

from django.conf import settings


def freeze_loaded() -> None:
    """Collect what the start left behind, then freeze the rest (once loading is done)."""
    if settings.GC_FREEZE:
        gc.collect()
        gc.freeze()
