"""The embedded system's task runner: with AI_TASKS_IN_PROCESS, the bridge's tasks run on threads of this process."""
import concurrent.futures
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

_local_pool: ThreadPoolExecutor | None = None
_local_pool_lock = threading.Lock()
_running: set[concurrent.futures.Future] = set()  # submitted, not finished


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
