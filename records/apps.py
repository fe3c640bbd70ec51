from django.apps import AppConfig


class RecordsConfig(AppConfig):
    name = "records"
    verbose_name = "Care-team records"

    def ready(self):
        from imserver.audit import audit_event
        from records.receivers import audit_event_store

        audit_event.connect(audit_event_store, dispatch_uid="records.audit_event_store")
