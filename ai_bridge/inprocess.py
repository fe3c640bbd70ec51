"""The embedded system's task runner: with AI_TASKS_IN_PROCESS, the bridge's tasks run on threads of this process."""
import concurrent.futures
import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

_local_pool: ThreadPoolExecutor | None = None
_local_pool_lock = threading.Lock()
_running: set[concurrent.futures.Future] = set()  # submitted, not finished
logger = logging.getLogger(__name__)


def run_local(func, *args) -> None:
    """Run a task's work in the process's own threads: the embedded system has no broker."""
    global _local_pool
    with _local_pool_lock:  # commits of several threads may dispatch at once
        if _local_pool is None:
            _local_pool = ThreadPoolExecutor(settings.AI_LOCAL_WORKERS, thread_name_prefix="ai-bridge")
    # The copied context carries the request id into the thread's logs.
    future = _local_pool.submit(contextvars.copy_context().run, func, *args)
    _running.add(future)
    future.add_done_callback(_running.discard)


def local_tasks_wait(timeout: float) -> int:
    """Wait up to `timeout` seconds for the tasks running in this process's threads (the process about to end);
    how many were still running then."""
    running = list(_running)
    return len(concurrent.futures.wait(running, timeout=timeout).not_done) if running else 0


def sweeper_start() -> threading.Thread:
    """The embedded system's Celery beat, on a thread of the server's process: every AI_SWEEP_INTERVAL seconds the
    records left PROCESSING too long (a call cut off when the process stopped) are dispatched again and the drafts
    nobody reviewed in time escalate, as the `ai-records-sweep` schedule does where there is a broker."""
    from django.apps import apps
    from django.db import connection

    def sweep_forever():
        while not halt.wait(settings.AI_SWEEP_INTERVAL):
            if not apps.ready:  # the server is still loading the application
                continue
            try:
                from ai_bridge.services import ai_records_redispatch_stale

                ai_records_redispatch_stale()
            except Exception:  # noqa: BLE001 - as beat: a failed round is logged, the next one tried
                logger.exception("The AI records' sweep failed; the next one is in %s s", settings.AI_SWEEP_INTERVAL)
            finally:
                connection.close()

    halt = threading.Event()
    thread = threading.Thread(target=sweep_forever, name="ai-bridge-sweep", daemon=True)
    thread.start()
    return thread
