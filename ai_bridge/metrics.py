"""ai_bridge's values read at scrape time, registered from AiBridgeConfig.ready() (imserver knows no app)."""
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from ai_bridge.models import AIInteractionRecord, Status

_PROCESSING = ("im_ai_records_processing", "AI interaction records in PROCESSING")


class _ProcessingCollector:
    """AI interaction records in PROCESSING."""

    def describe(self):  # lets the registry check names without touching the database at registration
        yield GaugeMetricFamily(*_PROCESSING)

    def collect(self):
        processing = GaugeMetricFamily(*_PROCESSING)
        try:
            processing.add_metric([], AIInteractionRecord.objects.filter(status=Status.PROCESSING).count())
        except Exception:  # noqa: BLE001 - a scrape never fails because a part is down
            processing.add_metric([], float("nan"))
        yield processing


_registered = False


def collector_register() -> None:
    """Add the collector to the process's registry, once however often the app is made ready."""
    global _registered
    if not _registered:
        REGISTRY.register(_ProcessingCollector())
        _registered = True
