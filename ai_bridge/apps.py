from django.apps import AppConfig


class AiBridgeConfig(AppConfig):
    name = "ai_bridge"
    verbose_name = "AI bridge"
