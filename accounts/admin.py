"""The admin: users listed with their roles and filterable by them; the site
carries the platform's name."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import AbstractUser
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.roles import ROLES

admin.site.site_header = f"{settings.SITE_NAME} administration"
admin.site.site_title = f"{settings.SITE_NAME} admin"
admin.site.index_title = "Users, roles and courses"

User = get_user_model()
# django.contrib.auth registered the plain UserAdmin (it comes first in
# INSTALLED_APPS); this one adds the roles.
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class PlatformUserAdmin(UserAdmin):
    list_display = ("username", "email", "roles", "is_staff", "is_active", "last_login")
    list_filter = ("groups", "is_staff", "is_superuser", "is_active")

    def get_queryset(self, request: HttpRequest) -> QuerySet[AbstractUser]:
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="roles")
    def roles(self, obj: AbstractUser) -> str:
        names = sorted(g.name for g in obj.groups.all() if g.name in ROLES)
        if obj.is_superuser:
            names.append("superuser")
        return ", ".join(names) or "—"
