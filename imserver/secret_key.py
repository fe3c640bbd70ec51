"""The development SECRET_KEY: made once per checkout and kept in an ignored file, so it is nobody else's."""
import os
import secrets
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def development_secret_key(path: Path) -> str:
    """The key kept at `path`, which is created (mode 0600) when it does not exist yet."""
    if not path.exists():
        try:
            _create(path)
        except OSError as exc:
            raise ImproperlyConfigured(f"SECRET_KEY is not set and {path} cannot be created ({exc}).") from exc
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(f"{path} is empty: delete it to have a new key made, or set SECRET_KEY.")
    return key


def _create(path: Path) -> None:
    # Written whole under a name of its own (mkstemp: O_EXCL, mode 0600), then linked into place, which fails if
    # the file exists: of several processes starting at once (tests start several servers), one wins and none
    # ever reads a half-written key.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
