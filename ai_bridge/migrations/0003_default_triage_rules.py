"""The red flags a clinic starts with (English and Chinese); editable in the admin."""
from django.db import migrations

from ai_bridge.triage_defaults import DEFAULT_RULES


def add_rules(apps, schema_editor):
    TriageRule = apps.get_model("ai_bridge", "TriageRule")
    TriageRule.objects.bulk_create([TriageRule(pattern=pattern, is_regex=is_regex, language=language, reason=reason)
                                    for pattern, is_regex, language, reason in DEFAULT_RULES])


def remove_rules(apps, schema_editor):
    TriageRule = apps.get_model("ai_bridge", "TriageRule")
    TriageRule.objects.filter(pattern__in=[rule[0] for rule in DEFAULT_RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("ai_bridge", "0002_safety")]

    operations = [migrations.RunPython(add_rules, remove_rules)]
