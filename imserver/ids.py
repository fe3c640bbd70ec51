"""Public identifiers: a prefix, then a ULID-style body that sorts by creation time."""
import os
import re
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
# What an id in a URL path may look like (the routers' lookup_value_regex): anything else is no such path,
# and never reaches the database (PostgreSQL refuses a NUL byte with an error, not an empty result).
URL_PATTERN = r"[0-9a-z_]+"
_SHAPE = re.compile(r"[0-9a-z_]{1,64}")


def id_shaped(value) -> bool:
    """Whether a value could be a public id (a frame's or a send's group_id): nothing else reaches the database."""
    return isinstance(value, str) and _SHAPE.fullmatch(value) is not None


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """`<prefix>_` + 10 chars of milliseconds + 16 random chars (80 bits)."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{_encode(millis, 10)}{_encode(int.from_bytes(os.urandom(10), 'big'), 16)}"


def user_id() -> str:
    return new_id("user")


def group_id() -> str:
    return new_id("group")


def message_id() -> str:
    return new_id("msg")


def record_id() -> str:
    return new_id("air")
