from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from imserver import crypto


class Command(BaseCommand):
    help = ("Re-encrypt every encrypted column under the first key of IM_ENCRYPTION_KEYS (plain-text rows are "
            "encrypted too), in batches; resumable: a row already under the first key is skipped. Keep the old keys "
            "listed after the new first one until it has finished.")

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=1000, help="Rows read and written per transaction.")

    def handle(self, *args, batch, **options):
        if batch < 1:
            raise CommandError("--batch must be at least 1.")
        if crypto.primary() is None:
            raise CommandError("IM_ENCRYPTION_KEYS is empty: there is no key to encrypt under.")
        for model, field in crypto.encrypted_fields():
            changed = self._rotate(model, field, batch)
            self.stdout.write(f"{model._meta.label}.{field.name}: {changed} rows rewritten")

    def _rotate(self, model, field, batch: int) -> int:
        quote = connection.ops.quote_name
        table, column, pk = quote(model._meta.db_table), quote(field.column), quote(model._meta.pk.column)
        changed, after = 0, None
        while True:
            with transaction.atomic(), connection.cursor() as cursor:
                where = f"WHERE {pk} > %s " if after is not None else ""
                cursor.execute(f"SELECT {pk}, {column} FROM {table} {where}ORDER BY {pk} LIMIT %s",
                               [after, batch] if after is not None else [batch])
                rows = cursor.fetchall()
                if not rows:
                    return changed
                stale = [(pk_value, stored) for pk_value, stored in rows
                         if stored is not None and not crypto.is_current(stored)]
                # Compare-and-set: a row written meanwhile (a record's body set after its AI call) keeps the newer.
                cursor.executemany(f"UPDATE {table} SET {column} = %s WHERE {pk} = %s AND {column} = %s",
                                   [(crypto.encrypt(crypto.decrypt(stored)), pk_value, stored)
                                    for pk_value, stored in stale])
                changed += len(stale)
                after = rows[-1][0]
            self.stdout.write(f"  {model._meta.label}.{field.name}: up to pk {after}, {changed} rewritten",
                              ending="\r")
