"""JSON with a bound on nesting: a body or frame nested thousands deep is a client error, not a crash."""
import json

from django.conf import settings


class TooDeep(ValueError):
    """The document nests arrays and objects deeper than IM_JSON_MAX_DEPTH."""

    def __init__(self):
        super().__init__(f"JSON may nest at most {settings.IM_JSON_MAX_DEPTH} levels deep.")


def check_depth(value) -> None:
    """Raise TooDeep when `value` nests deeper than IM_JSON_MAX_DEPTH; walked without recursion."""
    limit = settings.IM_JSON_MAX_DEPTH
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            raise TooDeep()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def loads(raw: str | bytes):
    """json.loads, refusing documents nested deeper than IM_JSON_MAX_DEPTH (ValueError, as for bad JSON)."""
    try:
        value = json.loads(raw)
    except RecursionError as exc:  # deeper than the interpreter's recursion limit
        raise TooDeep() from exc
    if isinstance(value, (dict, list)):
        check_depth(value)
    return value
