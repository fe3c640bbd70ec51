"""Client frames: parsing and the shape of their fields, before any service sees them."""
import time
from collections import deque

from django.conf import settings

from imserver import ids, jsonlimits
from imserver.errors import RateLimited, ServiceError


class FrameError(ServiceError):
    """A frame that is not JSON, not an object, of an unknown type, or with a field of the wrong shape."""


class FrameTooLarge(ServiceError):
    code = "PAYLOAD_TOO_LARGE"


def parse(raw: str | bytes | None) -> dict:
    """One frame as a dict with a string `type`; refused when too large, too deep, or not an object."""
    if raw is None:
        raise FrameError("The frame is empty.")
    size = len(raw.encode()) if isinstance(raw, str) else len(raw)  # as it travelled: text frames are UTF-8
    if size > settings.WS_MAX_FRAME_BYTES:
        raise FrameTooLarge(f"Frames are limited to {settings.WS_MAX_FRAME_BYTES} bytes.")
    try:
        frame = jsonlimits.loads(raw)
    except jsonlimits.TooDeep as exc:
        raise FrameError(str(exc)) from exc
    except (TypeError, ValueError) as exc:
        raise FrameError("The frame is not valid JSON.") from exc
    if not isinstance(frame, dict):
        raise FrameError("A frame must be a JSON object with a type.")
    if not isinstance(frame.get("type"), str):
        raise FrameError("A frame must have a string type.")
    return frame


def required(frame: dict, field: str):
    """The field's value; missing (or an empty string, but for content) is refused."""
    value = frame.get(field)
    if value is None or value == "" and field != "content":
        raise FrameError(f"The frame lacks {field}.", details={field: ["required"]})
    return value


def group_id(frame: dict) -> str:
    """The frame's group_id, shaped like one (so that nothing else reaches the database)."""
    value = required(frame, "group_id")
    if not isinstance(value, str):
        raise FrameError("group_id must be a string.", details={"group_id": ["Not a string."]})
    if not ids.id_shaped(value):
        raise FrameError("group_id is not a group id.", details={"group_id": ["Not an id."]})
    return value


def integer(frame: dict, field: str, *, default: int, low: int, high: int | None = None) -> int:
    """An integer field within [low, high]; booleans and fractions are refused."""
    value = frame.get(field, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        raise FrameError(f"{field} must be an integer from {low}" + (f" to {high}." if high is not None else "."),
                         details={field: ["Out of range or not an integer."]})
    return value


class FrameRate:
    """One connection's flood guard: at most WS_RATE_MESSAGES frames of any type per WS_RATE_INTERVAL seconds.

    (Sends have their own rate per user, shared with HTTP, in the send path.)"""

    def __init__(self):
        self.times: deque[float] = deque()  # oldest first

    def hit(self) -> None:
        """Count one frame; refuse it when the window is full."""
        now = time.monotonic()
        while self.times and self.times[0] <= now - settings.WS_RATE_INTERVAL:
            self.times.popleft()
        if len(self.times) >= settings.WS_RATE_MESSAGES:
            wait = self.times[0] + settings.WS_RATE_INTERVAL - now
            raise RateLimited(f"At most {settings.WS_RATE_MESSAGES} frames per {settings.WS_RATE_INTERVAL:g} s; "
                              "slow down.", retry_after=wait)
        self.times.append(now)
