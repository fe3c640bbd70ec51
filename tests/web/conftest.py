import os

# Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are plain sync code.
# (Set when the browser tests are collected, as it always was, and not for a run without them.)
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
