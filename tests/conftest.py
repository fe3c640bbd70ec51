import threading
import warnings
import weakref

import pytest
from django.db import DatabaseError
from django.db.backends.signals import connection_created
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from groups.services import group_create, member_add
from users.models import Role
from users.services import user_create

# Every shared fixture, registered once; helpers are imported from tests.support by name.
pytest_plugins = ["tests.support.live", "tests.support.ai", "tests.support.api", "tests.support.ws",
                  "tests.support.web"]


@pytest.fixture
def make_user(db):
    counter = iter(range(1, 10_000))

    def make(role=Role.PATIENT, *, username=None, password=None, is_staff=False):
        return user_create(username=username or f"{role.lower()}_{next(counter)}", user_role=role,
                           password=password, is_staff=is_staff)

    return make


@pytest.fixture
def client_for():
    """An API client authenticated as the user with a Bearer access token."""

    def make(user=None):
        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
        return client

    return make


@pytest.fixture
def doctor(make_user):
    return make_user(Role.DOCTOR)


@pytest.fixture
def patient(make_user):
    return make_user(Role.PATIENT)


@pytest.fixture
def assistant(make_user):
    return make_user(Role.AI_ASSISTANT)


@pytest.fixture
def outsider(make_user):
    return make_user(Role.PATIENT)


@pytest.fixture
def staff(make_user):
    return make_user(Role.DOCTOR, is_staff=True)


@pytest.fixture
def care_group(doctor, patient, assistant):
    """A group made by `doctor`, with `patient` and `assistant` as members."""
    group = group_create(creator=doctor, group_name="Ward 7")
    member_add(group=group, user=patient, user_role=Role.PATIENT)
    member_add(group=group, user=assistant, user_role=Role.AI_ASSISTANT)
    return group


@pytest.fixture(autouse=True)
def _tasks_in_process(request, settings):
    """Outside end-to-end tests, AI tasks run in-process (the embedded system), not on a broker."""
    if "e2e" not in request.keywords:
        settings.AI_TASKS_IN_PROCESS = True
        settings.CELERY_TASK_ALWAYS_EAGER = True  # and nothing reaches Celery's broker


@pytest.fixture(autouse=True)
def _sends_through_the_orm(settings):
    """In the test process, sends take the ORM path: the direct one (chat.gate) lives on a server's event loop
    with connections of its own, so the end-to-end tests run it in real servers."""
    settings.SEND_DIRECT = False


@pytest.fixture(autouse=True)
def _fresh_rate_counters():
    """Send-rate counters are keyed by user pk, which SQLite reuses after a flush and a new PostgreSQL test
    database reuses from the run before: start each test with none. (The Redis cache is shared with the broker:
    only the counters go.)"""
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache
    from django.core.cache.backends.redis import RedisCache

    from imserver.patches import redis_cache_client

    cache = caches["default"]
    if isinstance(cache, LocMemCache):
        cache.clear()
    elif isinstance(cache, RedisCache):
        client = redis_cache_client(cache, write=True)
        for key in client.scan_iter(cache.make_key("throttle_*")):
            client.delete(key)


@pytest.fixture(autouse=True)
def _pool_threads_give_connections_back(monkeypatch):
    """channels' test communicator turns database_sync_to_async's closing of connections off (to spare the test's
    own); the consumer's sends run in a thread pool, whose threads must still give theirs back to the pool, as
    they do outside tests."""
    from channels.db import DatabaseSyncToAsync

    from imserver.patches import thread_handler_closing_in_pools

    monkeypatch.setattr(DatabaseSyncToAsync, "thread_handler",
                        thread_handler_closing_in_pools(DatabaseSyncToAsync.thread_handler))


@pytest.fixture(autouse=True)
def _sync_to_async_thread_gives_its_connection_back():
    """A test's sync_to_async outside any async_to_sync runs in asgiref's one shared thread, which lives as long as
    the test process, and so would its database connection: PostgreSQL then refused to drop the test database at
    the end of the run ("being accessed by other users"). It is closed after each test."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


# Each thread's database connections, as they are made: those of threads that ended (the in-process AI tasks'
# threads, a test's own threads) go back to the pool after each test, and all but the main thread's before the
# test databases are dropped. (The browser tests' connections of Playwright's loop context go back in their own
# fixture, tests.support.web.browser: the report below named them.)
_connection_threads: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _connection_thread_noted(sender, connection, **kwargs):
    _connection_threads[connection] = threading.current_thread()


connection_created.connect(_connection_thread_noted, dispatch_uid="tests.connection_thread_noted")


def connections_of_other_threads_close(*, only_ended: bool) -> int:
    """Give back (to the pool, or close) what threads other than the main one hold: those that ended, or all."""
    closed = 0
    for wrapper, thread in list(_connection_threads.items()):
        if thread is threading.main_thread() or wrapper.connection is None or (only_ended and thread.is_alive()):
            continue
        wrapper.inc_thread_sharing()  # Django's wrappers refuse a close from another thread otherwise
        try:
            wrapper.close()
            closed += 1
        except DatabaseError:  # a connection the database ended: nothing is held any more
            pass
        finally:
            wrapper.dec_thread_sharing()
    return closed


@pytest.fixture(autouse=True)
def _ended_threads_give_their_connections_back():
    yield
    connections_of_other_threads_close(only_ended=True)


@pytest.fixture(scope="session", autouse=True)
def _no_thread_holds_the_test_database_at_the_end(django_db_setup, django_db_blocker):
    """Before the test databases are dropped: the in-process AI tasks of the last tests end (they retry an AI
    service that is not there for a few seconds), and what any thread but the main one still holds goes back."""
    yield
    from ai_bridge.inprocess import local_tasks_wait

    local_tasks_wait(timeout=30)
    connections_of_other_threads_close(only_ended=False)
    _sessions_left_reported(django_db_blocker)


def _sessions_left_reported(django_db_blocker) -> None:
    """Name the sessions still open on the test database once this process has closed its own (the pool's
    included), with what they ran last: one of them makes the database's drop fail ("1 other session using the
    database"), and this says whose it is."""
    import psycopg
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    mine = {wrapper.connection.info.backend_pid: thread.name for wrapper, thread in list(_connection_threads.items())
            if wrapper.connection is not None and not wrapper.connection.closed}
    with django_db_blocker.unblock():
        connection.close()
        connection.close_pool()
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
            left = admin.execute("SELECT pid, client_port, backend_start, state, left(query, 300) FROM"
                                 " pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                                 ).fetchall()
    if left:
        warnings.warn(f"sessions left on the test database: {left}; Django connections of this process's other"
                      f" threads, by backend pid: {mine}", stacklevel=1)


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    """The served OpenAPI document, fetched once per module: it does not depend on stored rows."""
    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema?format=json")
    assert response.status_code == 200
    return response.json()
