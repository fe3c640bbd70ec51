from django.core.management.base import BaseCommand, CommandError

from users import services
from users.models import User


class Command(BaseCommand):
    help = ("Deactivate a user, given its username or user_id: their tokens are refused and their open "
            "connections closed at once; their messages stay. --reactivate lets them in again.")

    def add_arguments(self, parser):
        parser.add_argument("user", help="username or user_id")
        parser.add_argument("--reactivate", action="store_true", help="Reactivate instead.")

    def handle(self, *args, user, reactivate, **options):
        found = User.objects.by_name_or_id(user)
        if found is None:
            raise CommandError(f"No user {user!r}.")
        if reactivate:
            services.user_reactivate(user=found)
            self.stdout.write(f"{found.username} ({found.user_id}) reactivated")
        else:
            services.user_deactivate(user=found)
            self.stdout.write(f"{found.username} ({found.user_id}) deactivated; connections closed")
