from django import forms
from django.contrib import admin
from django.contrib.auth.password_validation import validate_password

from users import services
from users.models import User


class UserAdminForm(forms.ModelForm):
    password = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                               help_text="Leave empty for a user without a password (tokens minted by staff), "
                                         "or to keep the current one.")

    class Meta:
        model = User
        fields = ["username", "user_role", "is_staff", "is_active"]

    def clean_password(self):
        # Refused on the form, not as a server error from the service.
        password = self.cleaned_data.get("password")
        if password:
            validate_password(password, self.instance)
        return password


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    """Users; every save goes through users.services."""

    form = UserAdminForm
    list_display = ["username", "user_id", "user_role", "is_staff", "is_active", "created_at"]
    list_filter = ["user_role", "is_staff", "is_active"]
    search_fields = ["username", "user_id"]
    readonly_fields = ["user_id", "created_at", "updated_at"]
    ordering = ["-id"]
    actions = ["deactivate", "reactivate"]

    @admin.action(description="Deactivate: refuse their tokens and close their connections")
    def deactivate(self, request, queryset):
        for user in queryset.filter(is_active=True):
            services.user_deactivate(user=user)

    @admin.action(description="Reactivate")
    def reactivate(self, request, queryset):
        for user in queryset.filter(is_active=False):
            services.user_reactivate(user=user)

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "username"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if not change:
            created = services.user_create(username=data["username"], user_role=data["user_role"],
                                           password=data.get("password") or None, is_staff=data["is_staff"])
            obj.pk, obj.user_id = created.pk, created.user_id
            return
        # The form has already set the fields on obj; reload so that only the services write.
        current = User.objects.get(pk=obj.pk)
        if current.user_role != data["user_role"]:
            services.user_role_change(user=current, user_role=data["user_role"])
        services.user_update(user=current, is_staff=data["is_staff"], is_active=data["is_active"],
                             password=data.get("password") or None)
