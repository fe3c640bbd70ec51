from django import forms
from django.contrib import admin

from chat.models import Message, MsgType
from chat.services import message_send, message_validate
from imserver.errors import ServiceError


class MessageAddForm(forms.ModelForm):
    class Meta:
        model = Message
        fields = ["group", "sender", "msg_type", "content"]

    def clean(self):
        data = super().clean()
        if data.get("msg_type") == MsgType.AI_REPLY:
            raise forms.ValidationError("Only the AI bridge writes AI replies.")
        if data.get("group") and data.get("sender") and "content" in data:
            try:
                message_validate(sender=data["sender"], group=data["group"], content=data["content"],
                                 msg_type=data["msg_type"])
            except ServiceError as exc:
                raise forms.ValidationError(exc.message) from exc
        return data


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages are read-only once stored; new ones go through chat.services.message_send."""

    list_display = ["message_id", "group", "seq", "sender", "from_role", "msg_type", "short_content", "created_at"]
    list_filter = ["group", "msg_type", "from_role"]
    search_fields = ["content", "message_id", "sender__username", "group__group_name"]
    list_select_related = ["group", "sender"]
    autocomplete_fields = ["group", "sender"]
    ordering = ["-id"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = MessageAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["group", "sender", "msg_type", "content"]
        return ["message_id", "group", "seq", "sender", "from_role", "msg_type", "content", "client_msg_id",
                "reply_to", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj) if obj is not None else []

    @admin.display(description="content")
    def short_content(self, obj):
        return obj.content if len(obj.content) <= 60 else obj.content[:57] + "..."

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        message, _ = message_send(sender=data["sender"], group=data["group"], content=data["content"],
                                  msg_type=data["msg_type"], via="admin")
        obj.pk = message.pk

    def has_change_permission(self, request, obj=None):
        return False  # stored messages are shown, never edited (a POST would otherwise send a new one)

    def has_delete_permission(self, request, obj=None):
        return False
