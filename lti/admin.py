"""Platform registrations and the tool's keys, managed in the Django admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from lti import keys
from lti.models import Deployment, LtiContext, LtiIdentity, LtiMembership, LtiScore, Platform, ToolKey


class DeploymentInline(admin.TabularInline):
    model = Deployment
    extra = 1


@admin.register(Platform)
class PlatformAdmin(admin.ModelAdmin):
    list_display = ("name", "issuer", "client_id", "active")
    list_filter = ("active",)
    search_fields = ("name", "issuer", "client_id")
    inlines = [DeploymentInline]
    readonly_fields = ("tool_urls",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = (
        (None, {"fields": ("name", "active")}),
        (
            "What the LMS gave you",
            {"fields": ("issuer", "client_id", "auth_login_url", "auth_token_url", "auth_audience", "key_set_url")},
        ),
        ("Embedding", {"fields": ("frame_origins",)}),
        ("What to enter in the LMS", {"fields": ("tool_urls",)}),
    )

    @admin.display(description="tool URLs (after this site's https://host)")
    def tool_urls(self, obj: Platform | None) -> str:
        return format_html(
            "Login (initiate login) URL: <code>{}</code><br>Redirect URI / target link URI: <code>{}</code><br>"
            "Public keyset (JWKS) URL: <code>{}</code><br>See docs/lti.md for Moodle and Canvas.",
            reverse("lti:login"),
            reverse("lti:launch"),
            reverse("lti:jwks"),
        )


@admin.register(ToolKey)
class ToolKeyAdmin(admin.ModelAdmin):
    list_display = ("kid", "created_at", "retired_at")
    fields = ("kid", "public_jwk", "created_at", "retired_at")
    readonly_fields = fields
    actions = ["rotate"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Rotate: make a new signing key and retire the current ones")
    def rotate(self, request: HttpRequest, queryset: QuerySet[ToolKey]) -> None:
        key = keys.tool_key_rotate()
        messages.success(request, f"New signing key {key.kid}; retired keys stay published for {keys.KEY_RETENTION}.")


@admin.register(LtiIdentity)
class LtiIdentityAdmin(admin.ModelAdmin):
    list_display = ("user", "issuer", "sub", "instructor_from_lti", "last_launch_at")
    search_fields = ("sub", "issuer", "user__username", "user__email")
    readonly_fields = ("issuer", "sub", "user", "instructor_from_lti", "created_at", "last_launch_at")


class MembershipInline(admin.TabularInline):
    model = LtiMembership
    extra = 0
    readonly_fields = ("user", "role", "source", "active", "updated_at")
    can_delete = False


@admin.register(LtiContext)
class LtiContextAdmin(admin.ModelAdmin):
    list_display = ("title", "platform", "context_id", "course", "roster_imported_at")
    list_filter = ("platform",)
    fields = ("platform", "context_id", "title", "label", "course", "memberships_url", "lineitems_url", "ags_scopes")
    readonly_fields = ("platform", "context_id", "memberships_url", "lineitems_url", "ags_scopes")
    inlines = [MembershipInline]


@admin.register(LtiScore)
class LtiScoreAdmin(admin.ModelAdmin):
    list_display = ("user", "lab", "context", "score_given", "score_maximum", "sent_at", "failures", "last_error")
    readonly_fields = [f.name for f in LtiScore._meta.get_fields()]
