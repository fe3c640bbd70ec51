import re

from django import forms
from django.contrib import admin, messages

from ai_bridge.models import AIInteractionRecord, EscalationDelivery, Status, TriageRule
from ai_bridge.services import ai_record_retry
from ai_bridge.triage import triage_rule_delete, triage_rule_save


@admin.register(AIInteractionRecord)
class AIInteractionRecordAdmin(admin.ModelAdmin):
    """AI records are written by the bridge only; the operator can retry failed ones."""

    list_display = ["record_id", "group", "status", "attempts", "duration_ms", "short_error", "created_at"]
    list_filter = ["status", "group"]
    search_fields = ["record_id", "user_message__message_id", "error_message"]
    list_select_related = ["group"]
    readonly_fields = ["record_id", "group", "user_message", "ai_message", "service_url", "request_body",
                       "response_body", "status", "attempts", "duration_ms", "error_message", "answered_by", "draft",
                       "reviewed_by", "reviewed_at", "created_at", "updated_at"]
    actions = ["retry_failed"]

    @admin.display(description="error or reason")
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


class TriageRuleForm(forms.ModelForm):
    class Meta:
        model = TriageRule
        fields = ["pattern", "is_regex", "language", "reason", "active"]

    def clean(self):
        data = super().clean()
        if data.get("is_regex") and data.get("pattern"):
            try:
                re.compile(data["pattern"])
            except re.error as exc:
                raise forms.ValidationError({"pattern": f"Not a valid regular expression: {exc}"}) from exc
        return data


@admin.register(TriageRule)
class TriageRuleAdmin(admin.ModelAdmin):
    """Red flags: a patient message matching an active rule goes to the doctors, never to the AI."""

    form = TriageRuleForm
    list_display = ["reason", "pattern", "is_regex", "language", "active", "updated_at"]
    list_filter = ["language", "active"]
    search_fields = ["reason", "pattern"]

    def save_model(self, request, obj, form, change):
        triage_rule_save(rule=obj, actor=request.user)

    def delete_model(self, request, obj):
        triage_rule_delete(rule=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for rule in queryset:
            triage_rule_delete(rule=rule, actor=request.user)


@admin.register(EscalationDelivery)
class EscalationDeliveryAdmin(admin.ModelAdmin):
    """Each escalation's signed POST to the webhook, as it went."""

    list_display = ["record", "url", "status", "attempts", "response_code", "last_error", "updated_at"]
    list_filter = ["status"]
    readonly_fields = ["record", "url", "status", "attempts", "response_code", "last_error", "created_at",
                       "updated_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
