"""What the tests share: fixtures (registered once in tests/conftest.py) and helpers imported by name.

api       the contract's error body, row counts, a superuser and the admin, access tokens, a log collector
ai        the reference AI service on a free port, the shipped red flags
live      real processes (daphne, Celery, the reference AI service, Redis, PostgreSQL, nginx) and their fixtures
ws        the WebSocket endpoint driven in-process (channels' communicator)
wsclient  a WebSocket client for real servers; rawws a raw one that can stop reading
web       headless Chromium and the page's helpers
teams     a care team that sends as a careful client does, for the deployment tests
waiting   wait_for, and showing absence: assert_stays, assert_nothing_arrives, ABSENCE_GRACE
workers   Redis state of its own for each pytest-xdist worker (loaded with -p, before Django's settings)
"""
