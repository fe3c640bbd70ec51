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


def record_undispatched(*, group, sender, content: str):
    """A patient's message and its open record, as ai_record_open makes them, but with no task started for it: the
    test drives the record itself (the message is stored while the group's AI is off, which opens no record)."""
    from ai_bridge.models import AIInteractionRecord
    from chat.services import message_send
    from groups.models import AIMode, ChatGroup

    mode = ChatGroup.objects.filter(pk=group.pk).values_list("ai_mode", flat=True).get()
    ChatGroup.objects.filter(pk=group.pk).update(ai_mode=AIMode.OFF)
    message, _ = message_send(sender=sender, group=ChatGroup.objects.get(pk=group.pk), content=content)
    ChatGroup.objects.filter(pk=group.pk).update(ai_mode=mode)
    record = AIInteractionRecord.objects.create(group=group, user_message=message)
    return AIInteractionRecord.objects.select_related("group", "user_message__sender").get(pk=record.pk)
