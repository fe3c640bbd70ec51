from django.core.management.base import BaseCommand, CommandError

from users.models import User
from users.services import user_tokens


class Command(BaseCommand):
    help = "Print an access token for a user, given its username or user_id."

    def add_arguments(self, parser):
        parser.add_argument("user", help="username or user_id")
        parser.add_argument("--refresh", action="store_true", help="Print the refresh token on a second line.")

    def handle(self, *args, user, refresh, **options):
        found = User.objects.by_name_or_id(user)
        if found is None:
            raise CommandError(f"No user {user!r}.")
        tokens = user_tokens(user=found)
        self.stdout.write(tokens["access"])
        if refresh:
            self.stdout.write(tokens["refresh"])
