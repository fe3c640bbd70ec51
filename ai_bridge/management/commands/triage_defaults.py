from django.core.management.base import BaseCommand

from ai_bridge.triage import triage_defaults_install


class Command(BaseCommand):
    help = "Add the shipped red-flag triage rules that are missing (English and Chinese); edited ones stay."

    def handle(self, *args, **options):
        self.stdout.write(f"{triage_defaults_install()} triage rule(s) added")
