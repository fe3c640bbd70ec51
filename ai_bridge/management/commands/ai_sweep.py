from django.core.management.base import BaseCommand

from ai_bridge.services import ai_records_redispatch_stale


class Command(BaseCommand):
    help = "Dispatch again the AI records left PROCESSING longer than AI_STALE_AFTER."

    def handle(self, *args, **options):
        self.stdout.write(f"Dispatched {ai_records_redispatch_stale()} stale AI record(s).")
