"""Red flags: patient messages that go to a doctor, never to the AI."""
import re
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from ai_bridge.models import TriageRule
from ai_bridge.triage_defaults import DEFAULT_RULES
from imserver.audit import audit


@dataclass(frozen=True)
class RedFlag:
    reason: str
    language: str


_lock = threading.Lock()
_compiled: tuple[float, list[tuple[re.Pattern, RedFlag]]] = (0.0, [])  # (read at, rules)


def _rules() -> list[tuple[re.Pattern, RedFlag]]:
    """The active rules, compiled; read again after AI_TRIAGE_CACHE_SECONDS (an admin edit shows at once here)."""
    global _compiled
    read_at, rules = _compiled
    if time.monotonic() - read_at < settings.AI_TRIAGE_CACHE_SECONDS:
        return rules
    with _lock:
        fresh = []
        for rule in TriageRule.objects.filter(active=True).order_by("id"):
            try:
                pattern = re.compile(rule.pattern if rule.is_regex else re.escape(rule.pattern), re.IGNORECASE)
            except re.error:
                continue  # the admin refuses a bad expression; one stored otherwise is skipped, not fatal
            fresh.append((pattern, RedFlag(reason=rule.reason, language=rule.language)))
        _compiled = (time.monotonic(), fresh)
    return fresh


def red_flag(text: str) -> RedFlag | None:
    """The first active triage rule the text matches, or None."""
    for pattern, flag in _rules():
        if pattern.search(text):
            return flag
    return None


def _rule_details(rule: TriageRule) -> dict:
    return {"pattern": rule.pattern, "is_regex": rule.is_regex, "language": rule.language, "reason": rule.reason,
            "active": rule.active}


@transaction.atomic
def triage_rule_save(*, rule: TriageRule, actor=None) -> TriageRule:
    """Create or change a red flag (the admin's form); audited."""
    created = rule.pk is None
    rule.save()
    audit(action="triage_rule.create" if created else "triage_rule.update", target=f"triage_rule:{rule.pk}",
          details=_rule_details(rule), actor=actor)
    return rule


@transaction.atomic
def triage_rule_delete(*, rule: TriageRule, actor=None) -> None:
    """Remove a red flag; audited."""
    target, details = f"triage_rule:{rule.pk}", _rule_details(rule)
    rule.delete()
    audit(action="triage_rule.delete", target=target, details=details, actor=actor)


def triage_defaults_install() -> int:
    """Add the shipped red flags that are missing (by pattern); returns how many were added."""
    present = set(TriageRule.objects.values_list("pattern", flat=True))
    missing = [TriageRule(pattern=pattern, is_regex=is_regex, language=language, reason=reason)
               for pattern, is_regex, language, reason in DEFAULT_RULES if pattern not in present]
    TriageRule.objects.bulk_create(missing)
    triage_rules_forget()
    return len(missing)


def triage_rules_forget() -> None:
    """Read the rules again on the next message (an admin edit here; the other processes after the cache time)."""
    global _compiled
    _compiled = (0.0, [])


@receiver([post_save, post_delete], sender=TriageRule, dispatch_uid="ai_bridge.triage_rules_changed")
def _forget(**kwargs):
    triage_rules_forget()
