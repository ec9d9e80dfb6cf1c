"""Writes of the LTI app: launches, the roster, and grade passback (CONVENTIONS.md #3).

Roles. Only the roles claim of a validated launch (or the platform's own
roster) decides: context Instructor (and its TeachingAssistant sub-role),
ContentDeveloper and Administrator, and the platform's system or institution
administrators, are instructors here; everyone else is a student. Names are
matched exactly, so a look-alike string, an institution "Instructor" (a
teacher taking someone else's course) or a custom parameter gives nothing.
An instructor role that came from a launch is taken back by a later launch as
a learner, so it always reflects the LMS's latest word. LTI users are never
staff or superusers and have no password here.

Grade passback. A lab's score is passed exercises out of its exercises. When
grading changes an exercise's status, ``lti.receivers`` enqueues
``lti.tasks.send_lab_score`` after commit for each LMS course the student is
enrolled in through LTI. The task claims a short lease on the ``LtiScore`` row
(one sender per score at a time), reads the score *then*, and sends it with
the timestamp of the grading that produced it; a timestamp is never older
than one already delivered, so an out-of-order or repeated send can never move
the gradebook backwards (AGS platforms keep the newest timestamp).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.urls import reverse
from django.utils import timezone
from pylti1p3.assignments_grades import AssignmentsGradesService
from pylti1p3.exception import LtiException, LtiServiceException
from pylti1p3.grade import Grade
from pylti1p3.lineitem import LineItem

from accounts.roles import INSTRUCTOR, STUDENT, add_role, remove_role
from courses.models import Course, Exercise, Lab, Module
from grader.models import ExerciseProgress, Submission
from lti import conf
from lti.models import (
    LtiContext,
    LtiIdentity,
    LtiLineItem,
    LtiMembership,
    LtiResourceLink,
    LtiScore,
    Platform,
)

log = logging.getLogger(__name__)

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
ROLES_CLAIM = CLAIM + "roles"
CONTEXT_CLAIM = CLAIM + "context"
RESOURCE_LINK_CLAIM = CLAIM + "resource_link"
CUSTOM_CLAIM = CLAIM + "custom"
DEPLOYMENT_CLAIM = CLAIM + "deployment_id"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
AGS_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
AGS_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
AGS_LINEITEM_READ = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"

_LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
INSTRUCTOR_ROLES = frozenset(
    {
        _LIS + "membership#Instructor",
        _LIS + "membership/Instructor#TeachingAssistant",
        _LIS + "membership#ContentDeveloper",
        _LIS + "membership#Administrator",
        _LIS + "system/person#Administrator",
        _LIS + "system/person#SysAdmin",
        _LIS + "institution/person#Administrator",
        # LTI 1.3 still allows the short context role names
        "Instructor",
        "ContentDeveloper",
    }
)

SCORE_LEASE = timedelta(seconds=60)
MAX_ROSTER_PAGES = 100
MAX_ROSTER_MEMBERS = 5000
LINEITEM_TAG = "kubelab-lab"


class LaunchRefused(Exception):
    """The launch is valid LTI but cannot be served; the message says why."""


class ScoreBusy(Exception):
    def __init__(self, retry_in: float) -> None:
        super().__init__(f"another send of this score holds the lease for {retry_in:.0f} s")
        self.retry_in = retry_in


class ScoreSendFailed(Exception):
    """The platform did not take the score (network, 4xx/5xx); the task retries."""


def role_for(roles: Any) -> str:
    """STUDENT or INSTRUCTOR for an LTI roles list (anything malformed is a student)."""
    if not isinstance(roles, list):
        return STUDENT
    return INSTRUCTOR if any(isinstance(r, str) and r in INSTRUCTOR_ROLES for r in roles) else STUDENT


# --- targets: what a launch opens -------------------------------------------------------


@dataclass(frozen=True)
class Target:
    course: Course
    module: Module | None = None
    lab: Lab | None = None

    @property
    def key(self) -> str:
        if self.lab is not None:
            return f"lab:{self.course.slug}/{self.lab.module.slug}/{self.lab.slug}"
        if self.module is not None:
            return f"module:{self.course.slug}/{self.module.slug}"
        return f"course:{self.course.slug}"

    @property
    def title(self) -> str:
        return (self.lab or self.module or self.course).title


def target_parse(value: Any) -> Target | None:
    """``course:<c>``, ``module:<c>/<m>`` or ``lab:<c>/<m>/<l>`` → the active objects, or None.
    Slugs are looked up, never used as paths."""
    if not isinstance(value, str) or ":" not in value or len(value) > 600:
        return None
    kind, _, path = value.strip().partition(":")
    parts = path.split("/")
    wanted = {"course": 1, "module": 2, "lab": 3}.get(kind)
    if wanted is None or len(parts) != wanted or not all(parts):
        return None
    course = Course.objects.active().filter(slug=parts[0]).first()
    if course is None:
        return None
    if kind == "course":
        return Target(course=course)
    module = Module.objects.active().filter(course=course, slug=parts[1]).first()
    if module is None:
        return None
    if kind == "module":
        return Target(course=course, module=module)
    lab = Lab.objects.active().filter(module=module, slug=parts[2]).select_related("module").first()
    return Target(course=course, module=module, lab=lab) if lab is not None else None


def target_choices() -> list[Target]:
    """Everything an instructor may pick when deep linking, in course order."""
    found: list[Target] = []
    for course in Course.objects.active().order_by("order", "slug"):
        found.append(Target(course=course))
        for module in course.modules.active().order_by("order", "slug"):
            found.append(Target(course=course, module=module))
            for lab in module.labs.active().order_by("order", "slug").select_related("module"):
                found.append(Target(course=course, module=module, lab=lab))
    return found


def landing_url(*, role: str, target: Target | None) -> str:
    """Where a launch lands: a student on the target; an instructor on the class view."""
    if role == INSTRUCTOR:
        url = reverse("courses:instructor")
        if target is None:
            return url
        query = f"?course={target.course.slug}"
        if target.module is not None:
            query += f"&module={target.module.pk}"
        return url + query
    if target is None:
        return reverse("courses:home")
    if target.lab is not None:
        return reverse("labs:lab", kwargs={"lab_id": target.lab.pk})
    if target.module is not None:
        return reverse("courses:module", kwargs={"course": target.course.slug, "module": target.module.slug})
    return reverse("courses:course", kwargs={"course": target.course.slug})


# --- users --------------------------------------------------------------------------------


def _username(issuer: str, sub: str) -> str:
    digest = hashlib.sha256(f"{issuer}\n{sub}".encode()).hexdigest()[:24]
    return f"lti-{digest}"


def _text(value: Any, limit: int) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def _apply_role(identity: LtiIdentity, user: User, role: str) -> None:
    add_role(user, role)
    if role == INSTRUCTOR and not identity.instructor_from_lti:
        identity.instructor_from_lti = True
        identity.save(update_fields=["instructor_from_lti"])
    elif role == STUDENT and identity.instructor_from_lti:
        remove_role(user, INSTRUCTOR)
        identity.instructor_from_lti = False
        identity.save(update_fields=["instructor_from_lti"])


def _identity_user(*, issuer: str, sub: str, person: dict[str, Any], role: str, launched: bool) -> User:
    """The account of (issuer, sub), made on first sight; names and email kept current."""
    if not issuer or not isinstance(sub, str) or not sub or len(sub) > 255:
        raise LaunchRefused("The launch names no user (sub), so nobody can be signed in.")
    identity = LtiIdentity.objects.select_related("user").filter(issuer=issuer, sub=sub).first()
    if identity is None:
        username = _username(issuer, sub)
        if get_user_model().objects.filter(username=username).exists():
            # taken by an account that is not this person's (e.g. a sign-up that guessed the name)
            username = f"{username}-{uuid.uuid4().hex[:8]}"
        try:
            with transaction.atomic():
                user = get_user_model().objects.create_user(username=username)
                user.set_unusable_password()
                user.save(update_fields=["password"])
                identity = LtiIdentity.objects.create(issuer=issuer, sub=sub, user=user)
        except IntegrityError:
            # the same person's other launch (two tabs) made the account first
            identity = LtiIdentity.objects.select_related("user").get(issuer=issuer, sub=sub)
    user = identity.user
    if not user.is_active:
        raise LaunchRefused("This account is disabled on this site. Ask its administrators.")
    fields = []
    for attr, claim, limit in (("first_name", "given_name", 150), ("last_name", "family_name", 150)):
        value = _text(person.get(claim), limit)
        if value and getattr(user, attr) != value:
            setattr(user, attr, value)
            fields.append(attr)
    if not person.get("given_name") and not person.get("family_name") and _text(person.get("name"), 150):
        full = _text(person.get("name"), 150)
        if user.first_name != full:
            user.first_name = full
            fields.append("first_name")
    email = _text(person.get("email"), 254)
    if email and "@" in email and user.email != email:
        user.email = email
        fields.append("email")
    if fields:
        user.save(update_fields=fields)
    if launched:
        identity.last_launch_at = timezone.now()
        identity.save(update_fields=["last_launch_at"])
        _apply_role(identity, user, role)
    elif role == INSTRUCTOR:
        _apply_role(identity, user, role)
    else:
        # The roster adds roles; only the person's own launch takes one back.
        add_role(user, STUDENT)
    return user


# --- launches -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchResult:
    user: User
    role: str
    target: Target | None
    context: LtiContext | None
    landing: str


def _service_urls(context: LtiContext, claims: dict[str, Any]) -> list[str]:
    fields = []
    nrps = claims.get(NRPS_CLAIM)
    if isinstance(nrps, dict) and isinstance(nrps.get("context_memberships_url"), str):
        url = nrps["context_memberships_url"][:1000]
        if context.memberships_url != url:
            context.memberships_url = url
            fields.append("memberships_url")
    ags = claims.get(AGS_CLAIM)
    if isinstance(ags, dict):
        if isinstance(ags.get("lineitems"), str) and context.lineitems_url != ags["lineitems"][:1000]:
            context.lineitems_url = ags["lineitems"][:1000]
            fields.append("lineitems_url")
        scopes = [s for s in ags.get("scope", []) if isinstance(s, str)] if isinstance(ags.get("scope"), list) else []
        if scopes and context.ags_scopes != scopes:
            context.ags_scopes = scopes
            fields.append("ags_scopes")
    return fields


@transaction.atomic
def launch_accept(*, platform: Platform, claims: dict[str, Any]) -> LaunchResult:
    """Sign-up-free provisioning from a validated launch: the user, their role,
    the LMS course, the enrolment and the placement, and where to land."""
    role = role_for(claims.get(ROLES_CLAIM))
    user = _identity_user(issuer=platform.issuer, sub=claims.get("sub", ""), person=claims, role=role, launched=True)
    custom = claims.get(CUSTOM_CLAIM) if isinstance(claims.get(CUSTOM_CLAIM), dict) else {}
    target = target_parse(custom.get("target")) if custom else None
    context = None
    raw_context = claims.get(CONTEXT_CLAIM)
    if isinstance(raw_context, dict) and isinstance(raw_context.get("id"), str) and raw_context["id"]:
        context, _ = LtiContext.objects.get_or_create(platform=platform, context_id=raw_context["id"][:255])
        fields = _service_urls(context, claims)
        for attr in ("title", "label"):
            value = _text(raw_context.get(attr), 255)
            if value and getattr(context, attr) != value:
                setattr(context, attr, value)
                fields.append(attr)
        deployment = _text(claims.get(DEPLOYMENT_CLAIM), 255)
        if deployment and context.deployment_id != deployment:
            context.deployment_id = deployment
            fields.append("deployment_id")
        link = claims.get(RESOURCE_LINK_CLAIM)
        if isinstance(link, dict) and isinstance(link.get("id"), str) and link["id"]:
            placement, _ = LtiResourceLink.objects.get_or_create(context=context, resource_link_id=link["id"][:255])
            link_fields = []
            if target is not None and placement.target != target.key:
                placement.target = target.key
                link_fields.append("target")
            elif target is None and placement.target:
                target = target_parse(placement.target)
            title = _text(link.get("title"), 255)
            if title and placement.title != title:
                placement.title = title
                link_fields.append("title")
            ags = claims.get(AGS_CLAIM)
            lineitem = ags.get("lineitem") if isinstance(ags, dict) else None
            if isinstance(lineitem, str) and placement.lineitem_url != lineitem[:1000]:
                placement.lineitem_url = lineitem[:1000]
                link_fields.append("lineitem_url")
            if link_fields:
                placement.save(update_fields=link_fields)
        if target is not None and context.course_id is None:
            context.course = target.course
            fields.append("course")
        if fields:
            context.save(update_fields=sorted(set(fields)))
        LtiMembership.objects.update_or_create(
            context=context,
            user=user,
            defaults={"role": role, "active": True, "updated_at": timezone.now(), "source": "launch"},
        )
    if target is None and context is not None and context.course_id is not None and context.course is not None:
        target = Target(course=context.course) if context.course.archived_at is None else None
    if role == INSTRUCTOR and target is not None:
        # The LMS says this person teaches this course: list them on it. An instructor made by a
        # launch teaches only the courses that list them (labs.selectors.teaches); a course that
        # lists no instructor of the site's own stays open to the site's own instructors.
        target.course.instructors.add(user)
    landing = landing_url(role=role, target=target)
    return LaunchResult(user=user, role=role, target=target, context=context, landing=landing)


# --- the roster (NRPS) ------------------------------------------------------------------------


@dataclass(frozen=True)
class RosterResult:
    created: int
    enrolled: int
    inactive: int


def context_for_instructor(*, user: Any, context_id: int) -> LtiContext | None:
    """The LMS course ``context_id`` if ``user`` teaches it there (an instructor
    membership from that very platform), else None. Superusers see every one."""
    found = LtiContext.objects.select_related("platform", "course").filter(pk=context_id).first()
    if found is None or not getattr(user, "is_authenticated", False):
        return None
    if user.is_superuser:
        return found
    teaches = LtiMembership.objects.filter(context=found, user=user, role=INSTRUCTOR, active=True).exists()
    return found if teaches else None


def contexts_for_instructor(*, user: Any) -> list[LtiContext]:
    if not getattr(user, "is_authenticated", False):
        return []
    found = LtiContext.objects.select_related("platform", "course")
    if not user.is_superuser:
        found = found.filter(memberships__user=user, memberships__role=INSTRUCTOR, memberships__active=True)
    return list(found.distinct().order_by("title", "pk"))


def _members(context: LtiContext) -> list[dict[str, Any]]:
    connector = conf.service_connector(context.platform)
    url: str | None = context.memberships_url
    members: list[dict[str, Any]] = []
    pages = 0
    while url and pages < MAX_ROSTER_PAGES and len(members) < MAX_ROSTER_MEMBERS:
        answer = connector.make_service_request(
            [NRPS_SCOPE], url, accept="application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
        )
        body = answer.get("body")
        page: Any = body.get("members", []) if isinstance(body, dict) else []
        members.extend(m for m in (page if isinstance(page, list) else []) if isinstance(m, dict))
        url = answer.get("next_page_url")
        pages += 1
    return members[:MAX_ROSTER_MEMBERS]


def roster_import(*, context: LtiContext) -> RosterResult:
    """Fetch the LMS course's members (NRPS) and create, link and enrol each one.

    Raises ``LaunchRefused`` when the LMS offers no roster or refuses us."""
    if not context.memberships_url:
        raise LaunchRefused(
            "The LMS did not offer its roster (Names and Role Provisioning) in any launch of this course. "
            "Turn on that service for the tool in the LMS, launch once, and try again."
        )
    try:
        members = _members(context)
    except (LtiServiceException, LtiException, OSError, ValueError) as exc:
        raise LaunchRefused(f"The LMS refused the roster request: {str(exc)[:300]}") from exc
    created = enrolled = inactive = 0
    issuer = context.platform.issuer
    with transaction.atomic():
        for member in members:
            sub = member.get("user_id")
            if not isinstance(sub, str) or not sub or len(sub) > 255:
                continue
            existed = LtiIdentity.objects.filter(issuer=issuer, sub=sub).exists()
            role = role_for(member.get("roles"))
            active = member.get("status", "Active") == "Active"
            user = _identity_user(issuer=issuer, sub=sub, person=member, role=role, launched=False)
            created += int(not existed)
            LtiMembership.objects.update_or_create(
                context=context,
                user=user,
                defaults={"role": role, "active": active, "updated_at": timezone.now(), "source": "roster"},
            )
            enrolled += int(active)
            inactive += int(not active)
        context.roster_imported_at = timezone.now()
        context.save(update_fields=["roster_imported_at"])
    return RosterResult(created=created, enrolled=enrolled, inactive=inactive)


# --- grade passback (AGS) ---------------------------------------------------------------------


@dataclass(frozen=True)
class LabScore:
    given: float
    maximum: float
    timestamp: datetime
    completed: bool


def lab_score(*, user_id: int, lab: Lab) -> LabScore | None:
    """Passed exercises over exercises, stamped with the grading that last changed it."""
    exercises = Exercise.objects.active().filter(lab=lab)
    total = exercises.count()
    if total == 0:
        return None
    passed = ExerciseProgress.objects.filter(
        user_id=user_id, exercise__in=exercises, status=ExerciseProgress.Status.PASSED
    ).count()
    stamp = (
        Submission.objects.graded()
        .filter(user_id=user_id, exercise__lab=lab)
        .aggregate(latest=Max("finished_at"))["latest"]
    )
    return LabScore(
        given=float(passed), maximum=float(total), timestamp=stamp or timezone.now(), completed=passed >= total
    )


def passback_contexts(*, user_id: int, lab: Lab) -> list[int]:
    """The LMS courses (through LTI enrolments) that grade this lab for this student."""
    return list(
        LtiContext.objects.filter(
            course_id=lab.module.course_id,
            memberships__user_id=user_id,
            memberships__active=True,
        )
        .filter(
            ~Q(lineitems_url="") | Q(resource_links__target__startswith="lab:", resource_links__lineitem_url__gt="")
        )
        .values_list("pk", flat=True)
        .distinct()
    )


def _lineitem_url(context: LtiContext, lab: Lab, score_maximum: float, connector: Any) -> str:
    key = f"lab:{lab.module.course.slug}/{lab.module.slug}/{lab.slug}"
    placed = LtiResourceLink.objects.filter(context=context, target=key).exclude(lineitem_url="").first()
    if placed is not None:
        return placed.lineitem_url
    cached = LtiLineItem.objects.filter(context=context, lab=lab).first()
    if cached is not None:
        return cached.url
    if not context.lineitems_url:
        raise ScoreSendFailed("the LMS gave no line items URL for this course")
    service = AssignmentsGradesService(connector, {"scope": context.ags_scopes, "lineitems": context.lineitems_url})
    wanted = (
        LineItem()
        .set_label(f"{lab.module.title}: {lab.title}"[:200])
        .set_score_maximum(score_maximum)
        .set_resource_id(f"lab-{lab.pk}")
        .set_tag(LINEITEM_TAG)
    )
    item = service.find_or_create_lineitem(wanted, find_by="resource_id")
    url = item.get_id()
    if not url:
        raise ScoreSendFailed("the LMS returned a line item without an id")
    LtiLineItem.objects.update_or_create(context=context, lab=lab, defaults={"url": url[:1000]})
    return url


def _claim_score(row: LtiScore) -> str | None:
    now = timezone.now()
    token = uuid.uuid4().hex
    claimed = (
        LtiScore.objects.filter(pk=row.pk)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_token=token, lease_until=now + SCORE_LEASE)
    )
    return token if claimed == 1 else None


def _release(row: LtiScore, token: str, **fields: Any) -> None:
    LtiScore.objects.filter(pk=row.pk, lease_token=token).update(lease_token="", lease_until=None, **fields)


def score_send(*, context_id: int, user_id: int, lab_id: int) -> str:
    """Send the student's current score of the lab to the LMS course's gradebook.

    Returns what happened ("sent", "unchanged", or "skipped: ..."); raises
    ``ScoreBusy`` (another send holds the lease) or ``ScoreSendFailed``."""
    context = LtiContext.objects.select_related("platform").filter(pk=context_id).first()
    lab = Lab.objects.select_related("module__course").filter(pk=lab_id).first()
    identity = LtiIdentity.objects.filter(user_id=user_id).first()
    if context is None or lab is None or identity is None:
        return "skipped: gone"
    if identity.issuer != context.platform.issuer:
        return "skipped: the student is not a user of this LMS"
    if not context.platform.active:
        return "skipped: registration inactive"
    row, _ = LtiScore.objects.get_or_create(context=context, user_id=user_id, lab=lab)
    token = _claim_score(row)
    if token is None:
        row.refresh_from_db()
        left = (row.lease_until - timezone.now()).total_seconds() if row.lease_until else 1.0
        raise ScoreBusy(max(1.0, left))
    try:
        row.refresh_from_db()
        score = lab_score(user_id=user_id, lab=lab)
        if score is None:
            _release(row, token)
            return "skipped: the lab has no exercises"
        stamp = score.timestamp
        if row.sent_timestamp is not None and stamp <= row.sent_timestamp:
            if (row.score_given, row.score_maximum) == (score.given, score.maximum):
                _release(row, token)
                return "unchanged"
            # A different score but no newer grading (exercises added or archived): one tick later.
            stamp = row.sent_timestamp + timedelta(milliseconds=1)
        connector = conf.service_connector(context.platform)
        url = _lineitem_url(context, lab, score.maximum, connector)
        grade = (
            Grade()
            .set_score_given(score.given)
            .set_score_maximum(score.maximum)
            .set_timestamp(stamp.isoformat(timespec="milliseconds"))
            .set_activity_progress("Completed" if score.completed else "InProgress")
            .set_grading_progress("FullyGraded")
            .set_user_id(identity.sub)
        )
        scopes = context.ags_scopes or [AGS_SCORE]
        connector.make_service_request(
            scopes,
            AssignmentsGradesService._add_url_path_ending(url, "scores"),
            is_post=True,
            data=grade.get_value(),
            content_type="application/vnd.ims.lis.v1.score+json",
        )
    except (LtiServiceException, LtiException, OSError, ValueError, KeyError, ScoreSendFailed) as exc:
        if isinstance(exc, LtiServiceException) and exc.response.status_code in (404, 410):
            # The column was deleted in the LMS: find or create it again on the retry.
            LtiLineItem.objects.filter(context=context, lab=lab).delete()
        message = str(exc)[:1000] or exc.__class__.__name__
        LtiScore.objects.filter(pk=row.pk, lease_token=token).update(failures=row.failures + 1, last_error=message)
        _release(row, token)
        raise ScoreSendFailed(message) from exc
    except BaseException:
        _release(row, token)
        raise
    _release(
        row,
        token,
        score_given=score.given,
        score_maximum=score.maximum,
        sent_timestamp=stamp,
        sent_at=timezone.now(),
        failures=0,
        last_error="",
    )
    return "sent"


def score_changed(*, user_id: int, exercise_id: int) -> None:
    """Grading changed an exercise's status: after commit, send the lab's score to each LMS course."""
    lab = Lab.objects.select_related("module").filter(exercises__pk=exercise_id).first()
    if lab is None or not LtiIdentity.objects.filter(user_id=user_id).exists():
        return
    from lti.tasks import send_lab_score

    for context_id in passback_contexts(user_id=user_id, lab=lab):
        # robust: a broker hiccup here is logged and must not stop the grader's own
        # on-commit work (the verdict pushed to the lab page) registered after this one
        transaction.on_commit(
            lambda c=context_id, lab_id=lab.pk: send_lab_score.delay(c, user_id, lab_id),  # type: ignore[misc]
            robust=True,
        )


def scores_resend_stale(*, limit: int = 500) -> int:
    """Enqueue the sends that never happened or never got through: a lab whose latest
    grading is newer than what its LMS course last accepted (a broker down at commit, retries
    exhausted while the LMS was down). Run by beat; returns how many were enqueued."""
    from lti.tasks import send_lab_score

    enqueued = 0
    memberships = (
        LtiMembership.objects.filter(active=True, context__course__isnull=False, context__platform__active=True)
        .exclude(context__lineitems_url="")
        .select_related("context")
        .order_by("pk")
    )
    for membership in memberships.iterator():
        course_id = membership.context.course_id
        if course_id is None:
            continue
        latest = (
            Submission.objects.graded()
            .filter(user_id=membership.user_id, exercise__lab__module__course_id=course_id)
            .values("exercise__lab")
            .annotate(latest=Max("finished_at"))
        )
        sent = dict(
            LtiScore.objects.filter(context=membership.context, user_id=membership.user_id).values_list(
                "lab_id", "sent_timestamp"
            )
        )
        for row in latest:
            delivered = sent.get(row["exercise__lab"])
            if row["latest"] is not None and (delivered is None or row["latest"] > delivered):
                send_lab_score.delay(membership.context_id, membership.user_id, row["exercise__lab"])
                enqueued += 1
                if enqueued >= limit:
                    return enqueued
    return enqueued
