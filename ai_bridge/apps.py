from django.apps import AppConfig


class AiBridgeConfig(AppConfig):
    name = "ai_bridge"
    verbose_name = "AI bridge"

    def ready(self):
        from ai_bridge import metrics, signals  # signals connects the post_save receiver
        from chat.services import orm_path_for

        metrics.collector_register()
        orm_path_for(signals.forwarded, reads=("ai_mode",))  # its record is opened in the message's transaction
