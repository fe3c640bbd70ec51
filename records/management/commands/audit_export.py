import json
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from imserver.audit import audit
from records.models import AuditEvent
from records.serializers import AuditEventSerializer


class Command(BaseCommand):
    help = "Write audit events as JSON lines, oldest first (one event a line); writes one audit event itself."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="File to write (default: standard output).")
        parser.add_argument("--since", help="Only events at or after this ISO 8601 time.")
        parser.add_argument("--action", help="Only events of this action.")
        parser.add_argument("--target", help="Only events of this target.")

    def handle(self, *args, output, since, action, target, **options):
        events = AuditEvent.objects.order_by("id")
        if since:
            when = parse_datetime(since)
            if when is None:
                raise CommandError(f"--since {since!r} is not an ISO 8601 time.")
            events = events.filter(created_at__gte=when)
        if action:
            events = events.filter(action=action)
        if target:
            events = events.filter(target=target)
        audit(action="audit.export", target="audit_events",
              details={key: value for key, value in {"since": since, "action": action, "target": target}.items()
                       if value})
        out = open(output, "w", encoding="utf-8") if output else sys.stdout
        try:
            for event in events.iterator(chunk_size=settings.IM_EXPORT_CHUNK_SIZE):
                out.write(json.dumps(AuditEventSerializer(event).data, ensure_ascii=False) + "\n")
        finally:
            if output:
                out.close()
