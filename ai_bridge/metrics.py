"""ai_bridge's values read at scrape time, registered from AiBridgeConfig.ready() (imserver knows no app)."""
from ai_bridge.models import AIInteractionRecord, Status
from imserver.metrics import scrape_gauge_register


def collector_register() -> None:
    """The gauge of AI interaction records in PROCESSING, once per process."""
    scrape_gauge_register("im_ai_records_processing", "AI interaction records in PROCESSING",
                          lambda: AIInteractionRecord.objects.filter(status=Status.PROCESSING).count())
