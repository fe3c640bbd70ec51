"""The reference AI service, started for a test on a free port and wired into the settings."""
import pytest

from ai_bridge.reference_service import Behaviour, serve_in_thread


@pytest.fixture
def ai_service(settings):
    """Start the reference AI service (real HTTP); returns its Behaviour, which a test may change."""
    behaviour = Behaviour(api_key="test-ai-key")
    server = serve_in_thread(behaviour)
    settings.AI_SERVICE_URL = f"http://127.0.0.1:{server.server_port}/reply"
    settings.AI_SERVICE_API_KEY = "test-ai-key"
    settings.AI_SERVICE_PROTOCOL = "simple"
    settings.AI_SERVICE_TIMEOUT = 5
    settings.AI_RETRY_BACKOFF = 0.05
    settings.AI_RETRY_BACKOFF_MAX = 0.2
    settings.AI_COALESCE_SECONDS = 0  # tests of bursts set their own window
    behaviour.port = server.server_port
    yield behaviour
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _triage_rules_read_afresh():
    """Each test reads the triage rules its database holds (a flush between tests sends no signal)."""
    from ai_bridge.triage import triage_rules_forget

    triage_rules_forget()


@pytest.fixture
def red_flags(db):
    """The shipped red flags, as the migration installs them (transactional tests flush them away)."""
    from ai_bridge.triage import triage_defaults_install

    triage_defaults_install()
