from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "users"
    verbose_name = "Users"

    def ready(self):
        from users import usercache  # noqa: F401 - connects the receiver that drops changed users everywhere
