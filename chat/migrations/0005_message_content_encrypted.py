from django.conf import settings
from django.db import migrations, models

import imserver.crypto

INDEX = models.Index(fields=["sender", "group", "seq"], name="ix_message_sender_group_seq")


def _concurrently(schema_editor) -> dict:
    # On PostgreSQL without the table lock a plain CREATE INDEX takes: sends go on while a large table is indexed.
    return {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}


def add_index(apps, schema_editor):
    schema_editor.add_index(apps.get_model("chat", "Message"), INDEX, **_concurrently(schema_editor))


def remove_index(apps, schema_editor):
    schema_editor.remove_index(apps.get_model("chat", "Message"), INDEX, **_concurrently(schema_editor))


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("chat", "0004_msg_type_system"),
        ("groups", "0004_member_last_read_seq"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The column stays text: the field encrypts and decrypts, and old plain-text rows read as they are.
        migrations.AlterField(model_name="message", name="content", field=imserver.crypto.EncryptedTextField()),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="message", index=INDEX)],
            database_operations=[migrations.RunPython(add_index, remove_index)],
        ),
    ]
