from django.core.management.base import BaseCommand, CommandError

from imserver.errors import ServiceError
from users.models import Role
from users.services import user_create


class Command(BaseCommand):
    help = "Create a user with a role (optionally staff) and print its user_id."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=Role.values, default=Role.PATIENT)
        parser.add_argument("--password", default=None, help="Omit for a user without a password.")
        parser.add_argument("--staff", action="store_true", help="Make the user staff (the operator).")

    def handle(self, *args, username, role, password, staff, **options):
        try:
            user = user_create(username=username, user_role=role, password=password, is_staff=staff)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(user.user_id)
