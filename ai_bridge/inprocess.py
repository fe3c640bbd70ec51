"""The embedded system's task runner: with AI_TASKS_IN_PROCESS, the bridge's tasks run on threads of this process."""
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

_local_pool: ThreadPoolExecutor | None = None
_local_pool_lock = threading.Lock()


def run_local(func, *args) -> None:
    """Run a task's work in the process's own threads: the embedded system has no broker."""
    global _local_pool
    with _local_pool_lock:  # commits of several threads may dispatch at once
        if _local_pool is None:
            _local_pool = ThreadPoolExecutor(settings.AI_LOCAL_WORKERS, thread_name_prefix="ai-bridge")
    # The copied context carries the request id into the thread's logs.
    _local_pool.submit(contextvars.copy_context().run, func, *args)
