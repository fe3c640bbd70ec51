from django.conf import settings
from django.core.management.base import BaseCommand

from groups.models import ChatGroup
from groups.services import group_create, member_add
from users.models import Role, User
from users.services import user_create, user_tokens

DEMO_USERS = [
    ("dr_chen", Role.DOCTOR, "doctor-demo-pass"),
    ("patient_li", Role.PATIENT, "patient-demo-pass"),
    ("patient_wang", Role.PATIENT, "patient-demo-pass"),
    ("ai_assistant", Role.AI_ASSISTANT, None),
]
DEMO_GROUP = "Demo care team"


class Command(BaseCommand):
    help = "Create the demo users and group when absent (idempotent) and print their tokens."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument("--quiet", action="store_true", help="Create, print nothing.")

    def handle(self, *args, base_url, quiet, **options):
        created = []
        users = {}
        for username, role, password in DEMO_USERS:
            user = User.objects.filter(username=username).first()
            if user is None:
                user = user_create(username=username, user_role=role, password=password)
                created.append(username)
            users[username] = user
        if not User.objects.filter(username="admin").exists():
            user_create(username="admin", user_role=Role.DOCTOR, password="admin-demo-pass", is_staff=True,
                        is_superuser=True)
            created.append("admin")
        group = ChatGroup.objects.filter(group_name=DEMO_GROUP).first()
        if group is None:
            group = group_create(creator=users["dr_chen"], group_name=DEMO_GROUP,
                                 description="A doctor, two patients and the AI assistant.")
            created.append(DEMO_GROUP)
        for username, role, _ in DEMO_USERS:
            if not group.memberships.filter(user=users[username]).exists():
                member_add(group=group, user=users[username], user_role=role)
        if quiet:
            return
        out = self.stdout.write
        out(f"Created: {', '.join(created) if created else 'nothing (all present)'}")
        out("")
        out(f"Demo group: {group.group_name}  group_id={group.group_id}")
        out("Demo users (username / password / role / access token):")
        for username, role, password in DEMO_USERS:
            token = user_tokens(user=users[username])["access"]
            out(f"  {username:<13} {password or '(no password)':<18} {role:<13} {users[username].user_id}")
            out(f"    token: {token}")
        out("  admin         admin-demo-pass    staff (Django admin at /admin/)")
        doctor_token = user_tokens(user=users["dr_chen"])["access"]
        out("")
        out("Send a message as the doctor:")
        out(f"  curl -s -X POST {base_url}/api/message/send -H 'Authorization: Bearer {doctor_token}' "
            f"-H 'Content-Type: application/json' -d '{{\"group_id\": \"{group.group_id}\", "
            f"\"content\": \"Hello from curl\"}}'")
        out("")
        out(f"Web chat: {base_url}/  (log in as dr_chen / doctor-demo-pass or patient_li / patient-demo-pass)")
        out(f"API docs: {base_url}/docs   Admin: {base_url}/admin/   "
            f"WebSocket: {base_url.replace('http', 'ws', 1)}/ws/<user_id>?token=<access token>")
        out(f"Tokens expire after {settings.SIMPLE_JWT['ACCESS_TOKEN_LIFETIME']}.")
