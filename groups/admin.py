from django.contrib import admin

from groups import services
from groups.models import ChatGroup, GroupMember


class GroupMemberInline(admin.TabularInline):
    model = GroupMember
    extra = 1
    fields = ["user", "user_role", "joined_at"]
    readonly_fields = ["joined_at"]
    autocomplete_fields = ["user"]


@admin.register(ChatGroup)
class ChatGroupAdmin(admin.ModelAdmin):
    """Groups with their members; every save goes through groups.services."""

    list_display = ["group_name", "group_id", "ai_mode", "ai_paused", "last_seq", "created_by", "created_at"]
    list_filter = ["ai_mode", "ai_paused"]
    search_fields = ["group_name", "group_id"]
    readonly_fields = ["group_id", "ai_paused", "created_by", "last_seq", "created_at", "updated_at"]
    fields = ["group_id", "group_name", "description", "ai_mode", "ai_paused", "created_by", "last_seq",
              "created_at", "updated_at"]
    inlines = [GroupMemberInline]

    def save_model(self, request, obj, form, change):
        data = {k: form.cleaned_data[k] for k in ("group_name", "description", "ai_mode")}
        if change:
            services.group_update(group=ChatGroup.objects.get(pk=obj.pk), **data)
        else:
            created = services.group_create(creator=request.user, **data)
            obj.pk, obj.group_id = created.pk, created.group_id

    def save_formset(self, request, form, formset, change):
        group = ChatGroup.objects.get(pk=form.instance.pk)
        # What formset.save() would have recorded; the admin's change message reads these.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        deleted = formset.deleted_forms
        for inline in formset.forms:
            if not inline.has_changed() and inline not in deleted:
                continue
            data, member = inline.cleaned_data, inline.instance
            if not data:
                continue
            if inline in deleted:
                if member.pk:
                    services.member_remove(group=group, user=member.user)
                    formset.deleted_objects.append(member)
            elif member.pk:
                changed = services.member_role_change(member=GroupMember.objects.get(pk=member.pk),
                                                      user_role=data["user_role"])
                formset.changed_objects.append((changed, inline.changed_data))
            elif data["user"].memberships.filter(group=group).exists():
                continue  # the creator, already added by group_create
            else:
                formset.new_objects.append(
                    services.member_add(group=group, user=data["user"], user_role=data["user_role"]))
