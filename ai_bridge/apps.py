from django.apps import AppConfig


class AiBridgeConfig(AppConfig):
    name = "ai_bridge"
    verbose_name = "AI bridge"

    def ready(self):
        from ai_bridge import metrics, signals  # noqa: F401 - signals connects the post_save receiver

        metrics.collector_register()
