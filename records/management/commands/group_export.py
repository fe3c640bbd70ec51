import sys

from django.core.management.base import BaseCommand, CommandError

from groups.models import ChatGroup
from records.exports import FORMATS, group_export


class Command(BaseCommand):
    help = ("Export a group's whole record (members with their read state, messages in seq order, AI records) as "
            "JSON or a FHIR R4 Bundle, in constant memory; writes one audit event.")

    def add_arguments(self, parser):
        parser.add_argument("group_id")
        parser.add_argument("--format", choices=FORMATS, default="json")
        parser.add_argument("--output", "-o", help="File to write (default: standard output).")
        parser.add_argument("--ai-bodies", action="store_true",
                            help="Include the AI records' request and response bodies (as staff see them).")

    def handle(self, *args, group_id, format, output, ai_bodies, **options):
        group = ChatGroup.objects.filter(group_id=group_id).first()
        if group is None:
            raise CommandError(f"No group {group_id!r}.")
        chunks = group_export(group=group, fmt=format, with_ai_bodies=ai_bodies, via="command")
        out = open(output, "w", encoding="utf-8") if output else sys.stdout
        try:
            for chunk in chunks:
                out.write(chunk)
        finally:
            if output:
                out.close()
        if output:
            self.stderr.write(f"{group.group_id} exported as {format} to {output}")
