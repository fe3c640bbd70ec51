from django.contrib import admin, messages

from ai_bridge.models import AIInteractionRecord, Status
from ai_bridge.services import ai_record_retry


@admin.register(AIInteractionRecord)
class AIInteractionRecordAdmin(admin.ModelAdmin):
    """AI records are written by the bridge only; the operator can retry failed ones."""

    list_display = ["record_id", "group", "status", "attempts", "duration_ms", "short_error", "created_at"]
    list_filter = ["status", "group"]
    search_fields = ["record_id", "user_message__message_id", "user_message__content", "error_message"]
    list_select_related = ["group"]
    readonly_fields = ["record_id", "group", "user_message", "ai_message", "service_url", "request_body",
                       "response_body", "status", "attempts", "duration_ms", "error_message", "created_at",
                       "updated_at"]
    actions = ["retry_failed"]

    @admin.display(description="error")
    def short_error(self, obj):
        return obj.error_message[:60]

    @admin.action(description="Retry the selected failed records")
    def retry_failed(self, request, queryset):
        retried = sum(ai_record_retry(record=record) for record in queryset.filter(status=Status.FAILED))
        self.message_user(request, f"{retried} record(s) dispatched again.", messages.SUCCESS)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
