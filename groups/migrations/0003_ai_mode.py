from django.db import migrations, models


def modes_from_switch(apps, schema_editor):
    ChatGroup = apps.get_model("groups", "ChatGroup")
    ChatGroup.objects.filter(ai_enabled=False).update(ai_mode="off")


def switch_from_modes(apps, schema_editor):
    ChatGroup = apps.get_model("groups", "ChatGroup")
    ChatGroup.objects.filter(ai_mode="off").update(ai_enabled=False)


class Migration(migrations.Migration):
    dependencies = [("groups", "0002_initial")]

    operations = [
        migrations.AddField(
            model_name="chatgroup", name="ai_mode",
            field=models.CharField(choices=[("auto", "Auto: the AI's answer is posted"),
                                            ("review", "Review: a doctor approves each answer"),
                                            ("off", "Off: a doctor has taken over")],
                                   default="auto", max_length=8),
        ),
        migrations.AddField(model_name="chatgroup", name="ai_paused",
                            field=models.BooleanField(default=False, editable=False)),
        migrations.RunPython(modes_from_switch, switch_from_modes),
        migrations.RemoveField(model_name="chatgroup", name="ai_enabled"),
    ]
