from django.apps import AppConfig

from imserver.audit import audit_event


class RecordsConfig(AppConfig):
    name = "records"
    verbose_name = "Care-team records"

    def ready(self):
        from records.receivers import audit_event_store  # its models need the app registry, ready only now

        audit_event.connect(audit_event_store, dispatch_uid="records.audit_event_store")
