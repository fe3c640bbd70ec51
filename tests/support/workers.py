"""Each pytest-xdist worker (`make test` runs the suite on several) gets Redis state of its own, as pytest-django
gives it a test database of its own (test_<name>_gw0, ...): the cache, the send-rate counters, the connection slots,
the Celery broker's queues and the channel layer would otherwise be shared between workers, whose tests clear the
counters and whose Celery workers would take one another's tasks.

Loaded with `-p` (pyproject.toml), so that it runs before Django's settings are read: a worker's REDIS_URL names
the next databases of the same server (gw0 the one after REDIS_URL's, gw1 the one after that, ...), and its
CHANNEL_LAYER_PREFIX, which also names the users-changed channel, is the worker's own (Redis pub/sub channels are not
per database)."""
import os
from urllib.parse import urlsplit, urlunsplit

REDIS_DATABASES = 16  # redis-server's default `databases`


def worker_redis_url(url: str, worker: int) -> str:
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(base + 1 + worker) % REDIS_DATABASES}"))


def _isolate(environ) -> None:
    worker = environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...: set by xdist before a worker reads its options
    if not worker:
        return
    number = int(worker.removeprefix("gw"))
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        if environ.get(name, "").startswith(("redis://", "rediss://")):
            environ[name] = worker_redis_url(environ[name], number)
    environ["CHANNEL_LAYER_PREFIX"] = f"{environ.get('CHANNEL_LAYER_PREFIX', 'im')}-{worker}"


_isolate(os.environ)
