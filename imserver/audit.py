"""Audit events: the services announce them here; records/ stores them (append-only table `audit_events`).

Call `audit(action=..., target=..., details=...)` from a service, inside the transaction of the change it records,
so that the event and the change commit or roll back together; a failure to store the event fails the action.
Write one event per change that happened (a no-op writes none).

Names, so that `GET /api/audit?action=` reads the same everywhere:
- `action` is `<thing>.<verb>`, lower snake case, the verb in the present tense: `user.role_change`,
  `user.deactivate`, `user.reactivate`, `member.add`, `member.remove`, `member.role_change`,
  `group.ai_mode_change`, `group.export`, `ai_record.read` (staff read the bodies), `audit.export`; the AI bridge's
  are `ai_draft.approve`, `ai_draft.reject`, `ai_record.escalate`, `triage_rule.create`, `triage_rule.update`,
  `triage_rule.delete`.
- `target` is the public id of the thing acted on (`user_…`, `group_…`, `air_…`), or `<thing>:<pk>` for one
  without a public id (`triage_rule:7`). Member events target the group; the member's user_id is in `details`.
- `details` is a small JSON object of public ids and values, e.g. `{"from": "PATIENT", "to": "DOCTOR"}`; never
  message content, AI bodies, tokens or passwords.
- `actor` is the user who acted; left out, it is the authenticated user of the current HTTP request (see
  AuditActorMiddleware), and outside any request (Celery, management commands) nobody: the system.
"""
import contextvars

from django.dispatch import Signal

from imserver.requestid import request_id_var

# Sent with actor_id, action, target, details, request_id (all strings but details, a dict).
audit_event = Signal()

_request_var: contextvars.ContextVar = contextvars.ContextVar("audit_request", default=None)


def current_actor():
    """The authenticated user of the request being served, else None."""
    request = _request_var.get()
    user = getattr(request, "user", None) if request is not None else None
    return user if user is not None and user.is_authenticated else None


def audit(*, action: str, target: str, details: dict | None = None, actor=None) -> None:
    """Announce one audit event (see the module's docstring for the names)."""
    actor = actor if actor is not None else current_actor()
    request_id = request_id_var.get()
    audit_event.send(sender=None, actor_id=actor.user_id if actor is not None else "", action=action,
                     target=target, details=details or {}, request_id="" if request_id == "-" else request_id)


class AuditActorMiddleware:
    """Keeps the request at hand for `audit`: the user is read when an event is written, after DRF has
    authenticated the request (it sets the user on the Django request too)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request_var.set(request)
        try:
            return self.get_response(request)
        finally:
            _request_var.reset(token)
