from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Messages"

    def ready(self):
        from chat import receivers  # noqa: F401 - connects the receivers of deletions and deactivations
