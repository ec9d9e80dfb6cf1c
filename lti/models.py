"""What the tool remembers about the LMSs it is registered with.

``Platform`` is one registration (an issuer and the client id it gave us), with
its ``Deployment`` ids; ``ToolKey`` holds our own RSA keys (the newest active
one signs; retired ones stay in the JWKS for a while). A launch creates or
finds an ``LtiIdentity`` keyed by (issuer, sub), so two platforms' ``sub``
values never meet, an ``LtiContext`` (the LMS course) and an
``LtiMembership`` (the enrolment, from a launch or the roster). ``LtiScore``
is the grade passback's record per (context, student, lab): what was last
delivered and with which timestamp, and a short lease so sends of one score
never overtake each other.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, or None."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


class Platform(models.Model):
    """One LMS registration: what the LMS's administrator gave us."""

    name = models.CharField(max_length=200, help_text="for people, e.g. 'University Moodle'")
    issuer = models.CharField(max_length=255, help_text="the platform's issuer (iss), e.g. https://moodle.example.edu")
    client_id = models.CharField(max_length=255, help_text="the client id the platform assigned to this tool")
    auth_login_url = models.URLField(max_length=500, help_text="the platform's OIDC authentication request URL")
    auth_token_url = models.URLField(max_length=500, help_text="the platform's OAuth2 access token URL (services)")
    auth_audience = models.CharField(
        max_length=500, blank=True, help_text="audience of the token request, when not the token URL (rare)"
    )
    key_set_url = models.URLField(max_length=500, help_text="the platform's public keyset (JWKS) URL")
    frame_origins = models.TextField(
        blank=True,
        help_text="origins allowed to show the tool in a frame, one per line (e.g. https://school.instructure.com); "
        "the issuer's and login URL's origins are always allowed",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "client_id"], name="lti_platform_issuer_client")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.issuer}, client {self.client_id})"

    def clean(self) -> None:
        for line in self.frame_origins.splitlines():
            if line.strip() and origin_of(line) != line.strip().rstrip("/"):
                raise ValidationError({"frame_origins": f"{line.strip()!r} is not an origin like https://lms.example"})

    def allowed_frame_origins(self) -> list[str]:
        found = [origin_of(self.issuer), origin_of(self.auth_login_url)]
        found += [origin_of(line) for line in self.frame_origins.splitlines() if line.strip()]
        return sorted({o for o in found if o})


class Deployment(models.Model):
    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="deployments")
    deployment_id = models.CharField(max_length=255)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["platform", "deployment_id"], name="lti_deployment_per_platform")
        ]

    def __str__(self) -> str:
        return self.deployment_id


class ToolKeyQuerySet(models.QuerySet["ToolKey"]):
    def published(self) -> ToolKeyQuerySet:
        """Keys in the JWKS: the active ones and those retired less than KEY_RETENTION ago."""
        from lti.keys import KEY_RETENTION

        return self.filter(models.Q(retired_at__isnull=True) | models.Q(retired_at__gt=timezone.now() - KEY_RETENTION))


class ToolKey(models.Model):
    """One of the tool's RSA key pairs. The newest unretired one signs."""

    kid = models.CharField(max_length=64, unique=True)
    private_key = models.TextField(help_text="PEM, never shown")
    public_jwk = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)

    objects = ToolKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.kid}{' (retired)' if self.retired_at else ''}"


class LtiIdentity(models.Model):
    """A person as one issuer knows them. Their account here is ``user``."""

    issuer = models.CharField(max_length=255)
    sub = models.CharField(max_length=255)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lti_identity")
    # The instructor role came from a launch (so a later Learner launch takes it back).
    instructor_from_lti = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_launch_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "sub"], name="lti_identity_issuer_sub")]
        verbose_name_plural = "LTI identities"

    def __str__(self) -> str:
        return f"{self.sub} @ {self.issuer}"


class LtiContext(models.Model):
    """A course of the LMS, bound to one of our courses by the first launch that names a target."""

    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="contexts")
    context_id = models.CharField(max_length=255)
    title = models.CharField(max_length=255, blank=True)
    label = models.CharField(max_length=255, blank=True)
    course = models.ForeignKey("courses.Course", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    deployment_id = models.CharField(max_length=255, blank=True)
    memberships_url = models.URLField(max_length=1000, blank=True)
    lineitems_url = models.URLField(max_length=1000, blank=True)
    ags_scopes = models.JSONField(default=list, blank=True)
    roster_imported_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["platform", "context_id"], name="lti_context_per_platform")]

    def __str__(self) -> str:
        return self.title or self.context_id


class LtiMembership(models.Model):
    """An enrolment: ``user`` is in the LMS course ``context`` with ``role``."""

    class Source(models.TextChoices):
        LAUNCH = "launch", "Launch"
        ROSTER = "roster", "Roster import"

    context = models.ForeignKey(LtiContext, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lti_memberships")
    role = models.CharField(max_length=16)  # accounts.roles.STUDENT / INSTRUCTOR
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.LAUNCH)
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["context", "user"], name="lti_membership_per_context")]

    def __str__(self) -> str:
        return f"{self.user} in {self.context} as {self.role}"


class LtiResourceLink(models.Model):
    """A placement of the tool in the LMS course, and what it opens."""

    context = models.ForeignKey(LtiContext, on_delete=models.CASCADE, related_name="resource_links")
    resource_link_id = models.CharField(max_length=255)
    title = models.CharField(max_length=255, blank=True)
    target = models.CharField(max_length=600, blank=True, help_text="course:<c>, module:<c>/<m> or lab:<c>/<m>/<l>")
    lineitem_url = models.URLField(max_length=1000, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["context", "resource_link_id"], name="lti_resource_link_per_context")
        ]

    def __str__(self) -> str:
        return f"{self.title or self.resource_link_id} → {self.target or 'home'}"


class LtiLineItem(models.Model):
    """The gradebook column of one lab in one LMS course (found or created through AGS)."""

    context = models.ForeignKey(LtiContext, on_delete=models.CASCADE, related_name="line_items")
    lab = models.ForeignKey("courses.Lab", on_delete=models.CASCADE, related_name="+")
    url = models.URLField(max_length=1000)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["context", "lab"], name="lti_lineitem_per_context_lab")]

    def __str__(self) -> str:
        return self.url


class LtiScore(models.Model):
    """The passback state of one student's score on one lab in one LMS course."""

    context = models.ForeignKey(LtiContext, on_delete=models.CASCADE, related_name="scores")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    lab = models.ForeignKey("courses.Lab", on_delete=models.CASCADE, related_name="+")
    score_given = models.FloatField(null=True, blank=True)
    score_maximum = models.FloatField(null=True, blank=True)
    # The timestamp of the last score the platform accepted; a send never carries an older one.
    sent_timestamp = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # One sender at a time per score (a lease, like grader's claims).
    lease_token = models.CharField(max_length=64, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["context", "user", "lab"], name="lti_score_per_student_lab")]

    def __str__(self) -> str:
        return f"{self.user} · {self.lab_id} · {self.score_given}/{self.score_maximum}"


class LtiNonce(models.Model):
    """A launch's nonce, kept so the same id_token can never log anyone in twice."""

    issuer = models.CharField(max_length=255)
    nonce = models.CharField(max_length=255)
    used_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "nonce"], name="lti_nonce_once")]

    def __str__(self) -> str:
        return self.nonce


class LtiStateValue(models.Model):
    """PyLTI1p3's login → launch state (state, nonce, launch data), kept in the
    database so every web process sees it; keys carry a per-browser cookie id."""

    key = models.CharField(max_length=255, unique=True)
    value = models.JSONField(null=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.key
