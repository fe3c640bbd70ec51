"""The users of access tokens, kept by each server process for AUTH_USER_CACHE_SECONDS, so that a request does not
query its user every time; any change of a user (deactivation, role, deletion, from any process: a server, the
admin, a `manage.py` command) drops it from every process as it commits.

The drop travels over Redis pub/sub, and the change's commit hook waits (up to AUTH_USER_CACHE_ACK_SECONDS) until
every listening process has dropped the user: when a deactivation returns, no process serves that user from its
cache. The cache is used only while this process listens: with no Redis, or while the subscription is down (and
until it is back, when everything kept so far is dropped), every request reads its user from the database as
before. A user read while a change was being announced is not kept."""
import copy
import logging
import math
import os
import threading
import time
import uuid

import redis
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from imserver import asyncdb
from imserver.cache import redis_connection_pool
from users.models import User

logger = logging.getLogger(__name__)


def _channel() -> str:
    return f"{settings.CHANNEL_LAYER_PREFIX}:users-changed"


def _ack_key_seconds() -> int:
    return max(1, math.ceil(settings.AUTH_USER_CACHE_ACK_SECONDS * 2))


def _load(user_id: str) -> User | None:
    return User.objects.filter(user_id=user_id).first()


class UserCache:
    """One process's users by public id, valid while the invalidation subscription listens."""

    def __init__(self):
        self.entries: dict[str, tuple[float, User]] = {}
        self.generation = 0  # bumped by every drop: a user read before it is not kept
        self.lock = threading.Lock()
        self.listening = threading.Event()
        self.listener: tuple[int, threading.Thread] | None = None  # (pid, thread): a forked child starts its own
        self.publisher: redis.Redis | None = None  # announces, and acknowledges what the listener heard
        self.publisher_pid = 0

    def get(self, user_id: str) -> User | None:
        """The user with this public id (None if there is none), from the cache while it is trustworthy."""
        ttl = settings.AUTH_USER_CACHE_SECONDS
        if ttl <= 0 or not settings.REDIS_URL:
            return _load(user_id)
        self._listen()
        hit = self.peek(user_id)  # each request its own instance: requests run in several threads
        if hit is not None:
            return hit
        generation = self.generation
        user = _load(user_id)
        if user is not None:
            self._keep(user_id, user, generation)
        return user

    async def aget(self, user_id: str) -> User | None:
        """get() from the server's event loop: a user not in the cache is read on its pool (imserver.asyncdb)
        and kept, as get() keeps it; None when there is no such user, or no trustworthy cache to keep it in
        (the caller then asks get() in a thread)."""
        hit = self.peek(user_id)
        if hit is not None or not self.listening.is_set():
            return hit
        generation = self.generation
        row = await asyncdb.fetchone(f"SELECT {asyncdb.columns(User)} FROM {User._meta.db_table} WHERE user_id = %s",
                                     [user_id])
        if row is None:
            return None
        user = asyncdb.instance(User, row)
        self._keep(user_id, user, generation)
        return copy.copy(user)

    def _keep(self, user_id: str, user: User, generation: int) -> None:
        """Keep a user read while `generation` was current, unless a change was announced since."""
        if self.listening.is_set():
            with self.lock:
                if generation == self.generation:
                    self.entries[user_id] = (time.monotonic(), copy.copy(user))

    def peek(self, user_id: str) -> User | None:
        """The user from the cache alone (None when it is not there, or not trustworthy now): for the event loop,
        which may not query."""
        if settings.AUTH_USER_CACHE_SECONDS <= 0 or not settings.REDIS_URL:
            return None
        self._listen()
        hit = self.entries.get(user_id) if self.listening.is_set() else None
        if hit is None or time.monotonic() - hit[0] >= settings.AUTH_USER_CACHE_SECONDS:
            return None
        return copy.copy(hit[1])

    def drop(self, user_id: str | None = None) -> None:
        """Forget one user (None: all of them)."""
        with self.lock:
            self.generation += 1
            if user_id is None:
                self.entries.clear()
            else:
                self.entries.pop(user_id, None)

    def announce(self, user_id: str) -> None:
        """Drop the user here and in every other process, and wait until each listening one says it has (called
        once the change is committed)."""
        self.drop(user_id)
        if not settings.REDIS_URL:
            return
        nonce = uuid.uuid4().hex
        acks = f"{_channel()}:ack:{nonce}"
        try:
            client = self._client()
            listeners = client.publish(_channel(), f"{nonce}:{user_id}")
            deadline = time.monotonic() + settings.AUTH_USER_CACHE_ACK_SECONDS
            heard = 0
            while heard < listeners and (left := deadline - time.monotonic()) > 0:
                if client.blpop([acks], timeout=left) is None:
                    break
                heard += 1
            client.delete(acks)
        except redis.RedisError as exc:
            # The other processes lost their subscription too (same Redis): they stopped using the cache.
            logger.warning("user change not announced: %s", exc.__class__.__name__)
            return
        if heard < listeners:
            logger.warning("user change acknowledged by %d of %d processes", heard, listeners)

    def _client(self) -> redis.Redis:
        if self.publisher is None or self.publisher_pid != os.getpid():
            self.publisher = redis.Redis(connection_pool=redis_connection_pool(
                settings.REDIS_URL, socket_timeout=settings.REDIS_SOCKET_TIMEOUT + settings.AUTH_USER_CACHE_ACK_SECONDS,
                socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT))
            self.publisher_pid = os.getpid()
        return self.publisher

    def _listen(self) -> None:
        if self.listener is not None and self.listener[0] == os.getpid():
            return
        with self.lock:
            if self.listener is None or self.listener[0] != os.getpid():
                self.listening.clear()
                self.entries.clear()
                thread = threading.Thread(target=self._run, name="user-cache", daemon=True)
                self.listener = (os.getpid(), thread)
                thread.start()

    def _run(self) -> None:
        pause = 0.5
        while True:
            try:
                client = redis.Redis(connection_pool=redis_connection_pool(
                    settings.REDIS_URL, socket_timeout=settings.AUTH_USER_CACHE_HEALTH_SECONDS * 3,
                    socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
                    health_check_interval=settings.AUTH_USER_CACHE_HEALTH_SECONDS))
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(_channel())
                while pubsub.get_message(timeout=settings.REDIS_SOCKET_TIMEOUT) is None and \
                        not pubsub.subscribed:
                    pass
                self.drop()  # whatever changed while nobody listened
                self.listening.set()
                pause = 0.5
                while True:
                    message = pubsub.get_message(timeout=settings.AUTH_USER_CACHE_HEALTH_SECONDS)
                    if message is not None and message["type"] == "message":
                        nonce, _, user_id = message["data"].decode().partition(":")
                        self.drop(user_id)
                        acks = f"{_channel()}:ack:{nonce}"
                        # kept no longer than the announcer waits for it
                        self._client().pipeline().rpush(acks, 1).expire(acks, _ack_key_seconds()).execute()
            except Exception as exc:  # noqa: BLE001 - a lost subscription means: no cache until it is back
                self.listening.clear()
                self.drop()
                logger.warning("user cache off: %s", exc.__class__.__name__)
                time.sleep(pause)
                pause = min(pause * 2, settings.AUTH_USER_CACHE_HEALTH_SECONDS)


users = UserCache()


@receiver([post_save, post_delete], sender=User, dispatch_uid="users.usercache.changed")
def _user_changed(sender, instance: User, **kwargs):
    user_id = instance.user_id
    users.drop(user_id)  # this process at once, even before the commit
    transaction.on_commit(lambda: users.announce(user_id))
