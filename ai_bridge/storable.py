"""What the AI sends back is made storable before it is: no NUL, no lone surrogates, bounded size."""
import json

from django.conf import settings

from chat.services import UNSTORABLE

TRUNCATED = " […truncated]"


def storable_text(text, limit: int | None = None) -> str:
    """Text PostgreSQL stores, cut to `limit` (AI_RECORD_TEXT_MAX) characters with a marker."""
    limit = settings.AI_RECORD_TEXT_MAX if limit is None else limit
    text = UNSTORABLE.sub("", text if isinstance(text, str) else str(text))
    return text if len(text) <= limit else text[: max(0, limit - len(TRUNCATED))] + TRUNCATED


def _clean(value):
    if isinstance(value, str):
        return UNSTORABLE.sub("", value)
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, dict):
        return {UNSTORABLE.sub("", str(key)): _clean(item) for key, item in value.items()}
    return value


def storable_json(value):
    """A JSON value PostgreSQL stores (jsonb refuses \\u0000), replaced by a cut text when it is too large."""
    if value is None:
        return None
    try:
        value = _clean(value)
    except RecursionError:
        return {"unstorable": True}
    text = json.dumps(value, ensure_ascii=False)
    if len(text) <= settings.AI_RECORD_TEXT_MAX:
        return value
    return {"truncated": True, "size": len(text), "text": storable_text(text)}
