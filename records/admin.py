from django.contrib import admin

from records.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit trail, to read: nobody adds, changes or deletes an event here, superusers included."""

    list_display = ["created_at", "action", "target", "actor_id", "request_id"]
    list_filter = ["action"]
    search_fields = ["event_id", "target", "actor_id", "request_id"]
    readonly_fields = ["event_id", "actor_id", "action", "target", "details", "request_id", "created_at"]
    fields = readonly_fields
    ordering = ["-id"]
    show_full_result_count = False  # no COUNT(*) over a table that only grows

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
