"""Encryption at rest for chosen text columns, under IM_ENCRYPTION_KEYS (the first encrypts, all decrypt).

A stored value is one of:
- `enc$f$<Fernet token>`: encrypted (AES-128-CBC with HMAC-SHA256, cryptography's MultiFernet);
- `enc$p$<text>`: plain text written without keys that itself began with `enc$` (so that nobody can make a plain
  message look like ciphertext and break its reads once keys are set);
- anything else: plain text, as written without keys or before this field existed.

Lookups on an encrypted column cannot match (each encryption differs): filter on other columns. What it protects:
a stolen database dump or backup. What it does not: a compromised server, which holds the keys.
"""
import functools
import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, models

MARK = "enc$"
ENCRYPTED = MARK + "f$"
ESCAPED = MARK + "p$"


class DecryptionError(ImproperlyConfigured):
    """A stored value none of IM_ENCRYPTION_KEYS opens: the wrong keys, never a reason to serve the ciphertext."""


@functools.lru_cache(maxsize=4)
def _fernets(keys: tuple[str, ...]) -> tuple[Fernet, ...]:
    try:
        return tuple(Fernet(key) for key in keys)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured("IM_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64 "
                                   "bytes each, e.g. from Fernet.generate_key()).") from exc


@functools.lru_cache(maxsize=4)
def _multi(keys: tuple[str, ...]) -> MultiFernet | None:
    return MultiFernet(list(_fernets(keys))) if keys else None


def _keys() -> tuple[str, ...]:
    return tuple(key.strip() for key in settings.IM_ENCRYPTION_KEYS if key.strip())


def fernet() -> MultiFernet | None:
    """The keys in force, None when encryption is off."""
    return _multi(_keys())


def primary() -> Fernet | None:
    """The key that encrypts (the first), None when encryption is off."""
    keys = _keys()
    return _fernets(keys)[0] if keys else None


def encrypt(text: str) -> str:
    """The stored form of `text`: encrypted under the first key, or plain text when there are no keys."""
    box = fernet()
    if box is None:
        return ESCAPED + text if text.startswith(MARK) else text
    return ENCRYPTED + box.encrypt(text.encode()).decode()


def decrypt(stored: str) -> str:
    """The plain text of a stored value; DecryptionError when it is encrypted and no key in force opens it."""
    if not stored.startswith(MARK):
        return stored
    if stored.startswith(ESCAPED):
        return stored[len(ESCAPED):]
    if not stored.startswith(ENCRYPTED):
        return stored  # a legacy row that happens to begin with the mark
    box = fernet()
    if box is None:
        raise DecryptionError("An encrypted value was read but IM_ENCRYPTION_KEYS is empty.")
    try:
        return box.decrypt(stored[len(ENCRYPTED):].encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("No key of IM_ENCRYPTION_KEYS decrypts a stored value: the keys are wrong or "
                              "incomplete (keep every old key until `manage.py encryption_rotate` has run).") from exc


def is_current(stored: str) -> bool:
    """Whether a stored value is already in the form the keys in force would write (rotation skips it)."""
    key = primary()
    if key is None:
        return not stored.startswith(ENCRYPTED)
    if not stored.startswith(ENCRYPTED):
        return False
    try:
        key.decrypt(stored[len(ENCRYPTED):].encode())
    except InvalidToken:
        return False
    return True


class EncryptedTextField(models.TextField):
    """A TextField stored encrypted when IM_ENCRYPTION_KEYS is set; Python code always sees the plain text."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return None if value is None else encrypt(value)


class EncryptedJSONField(EncryptedTextField):
    """A JSON value kept as encrypted JSON text (a text column: the database cannot look inside it anyway)."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else json.loads(decrypt(value))

    def to_python(self, value):
        return json.loads(value) if isinstance(value, str) else value

    def get_prep_value(self, value):
        return None if value is None else encrypt(json.dumps(value, ensure_ascii=False))

    def value_to_string(self, obj):
        return json.dumps(self.value_from_object(obj), ensure_ascii=False)


def encrypted_fields() -> list[tuple[type[models.Model], models.Field]]:
    """Every (model, field) stored encrypted, for the rotation command and the start-up check."""

    return [(model, field) for model in apps.get_models() for field in model._meta.concrete_fields
            if isinstance(field, EncryptedTextField)]


def sample_encrypted(model, field, connection, *, among: int = 1000) -> list[str]:
    """Raw stored values to try the keys on: an encrypted one among the model's first and last `among` rows."""
    table, column, pk = model._meta.db_table, field.column, model._meta.pk.column
    quote = connection.ops.quote_name
    found = []
    # Bounded, so that a large table that was never encrypted is not scanned whole at every start; the oldest
    # rows too, for an old key dropped before `encryption_rotate` has finished is the likely mistake.
    with connection.cursor() as cursor:
        for order in ("ASC", "DESC"):
            cursor.execute(f"SELECT v FROM (SELECT {quote(column)} AS v FROM {quote(table)} ORDER BY {quote(pk)} "
                           f"{order} LIMIT {int(among)}) edge WHERE v LIKE %s LIMIT 1", [ENCRYPTED + "%"])
            found += [row[0] for row in cursor.fetchall()]
    return found


@checks.register(checks.Tags.security, checks.Tags.database)
def check_encryption_keys(app_configs=None, databases=None, **kwargs):
    """IM_ENCRYPTION_KEYS are well-formed; with a database (migrate, `check --database default`) they also open the
    oldest and newest encrypted values of every encrypted column, so that wrong keys stop the start, not a read."""
    try:
        fernet()
    except ImproperlyConfigured as exc:
        return [checks.Critical(str(exc), id="imserver.E101")]
    errors = []

    for alias in databases or ():
        for model, field in encrypted_fields():
            try:
                samples = sample_encrypted(model, field, connections[alias])
            except DatabaseError:
                continue  # not migrated yet: nothing is stored
            try:
                for stored in samples:
                    decrypt(stored)
            except DecryptionError as exc:
                errors.append(checks.Critical(f"{model._meta.label}.{field.name}: {exc}", id="imserver.E102"))
    return errors
