"""The tool's endpoints: OIDC login, launch, deep linking, JWKS, roster import.

``login`` and ``launch`` are called by the LMS (cross-site, inside its
iframe): they are CSRF-exempt because the OIDC state cookie, the
per-browser state id and the signed, single-use id_token are their
protection, exactly what the LTI Security Framework prescribes. Every
refusal renders ``lti/error.html`` with status 400/403 and says why.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from pylti1p3.deep_link_resource import DeepLinkResource
from pylti1p3.exception import LtiException, OIDCException
from pylti1p3.lineitem import LineItem

from accounts.roles import INSTRUCTOR
from lti import conf, keys, services
from lti.embedding import mark_embedded
from lti.models import LtiIdentity

log = logging.getLogger(__name__)

DEEP_LINK_SESSION_KEY = "lti_deep_link"


def _refuse(request: HttpRequest, message: str, *, status: int = 400) -> HttpResponse:
    return render(request, "lti/error.html", {"message": message}, status=status)


def _launch_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("lti:launch"))


@csrf_exempt
@xframe_options_exempt
@never_cache
@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    """OIDC third-party initiated login: remember state and nonce, send the browser to the platform."""
    oidc = conf.new_login(request)
    registration = None
    try:
        registration = oidc.validate_oidc_login()
    except OIDCException as exc:
        log.info("LTI login refused: %s", exc)
        return _refuse(request, f"The LMS's login request was refused: {exc}. Check the tool's registration.")
    assert isinstance(registration, conf.ToolRegistration)
    oidc.pass_params_to_launch({conf.STATE_PARAM_PLATFORM: registration.platform.pk})
    try:
        response: HttpResponse = oidc.redirect(_launch_url(request))
    except OIDCException as exc:
        return _refuse(request, f"The LMS's login request was refused: {exc}.")
    return response


@csrf_exempt
@xframe_options_exempt
@never_cache
@require_POST
def launch(request: HttpRequest) -> HttpResponse:
    """The platform posts the signed id_token here: validate, sign the person in, land them."""
    if "id_token" not in request.POST:
        return _refuse(request, "This address is for launches from an LMS: it got no id_token.")
    try:
        message = conf.new_launch(request)
        message.validate()
    except LtiException as exc:
        log.info("LTI launch refused: %s", exc)
        return _refuse(request, f"The launch was refused: {str(exc).rstrip('.')}.")
    claims: dict[str, Any] = dict(message.get_launch_data())
    platform = message.registration().platform
    deep_link = message.is_deep_link_launch()
    # Refused before anyone is signed in or anything is recorded.
    if not deep_link and not message.is_resource_launch():
        return _refuse(request, "This kind of LTI message is not supported by this tool.")
    if deep_link and services.role_for(claims.get(services.ROLES_CLAIM)) != INSTRUCTOR:
        return _refuse(request, "Only an instructor of the LMS course may choose what this tool opens.", status=403)
    try:
        result = services.launch_accept(platform=platform, claims=claims)
    except services.LaunchRefused as exc:
        return _refuse(request, str(exc), status=403)
    auth_login(request, result.user, backend="django.contrib.auth.backends.ModelBackend")
    mark_embedded(request, platform)
    if deep_link:
        request.session[DEEP_LINK_SESSION_KEY] = message.get_launch_id()
        return render(
            request,
            "lti/deep_link.html",
            {"choices": services.target_choices(), "launch_id": message.get_launch_id()},
        )
    return HttpResponseRedirect(result.landing)


@login_required
@require_POST
@never_cache
def deep_link_respond(request: HttpRequest) -> HttpResponse:
    """The instructor picked a target: return it to the LMS as an LtiResourceLink content item."""
    launch_id = request.session.get(DEEP_LINK_SESSION_KEY)
    if not launch_id or request.POST.get("launch_id") != launch_id:
        return _refuse(request, "This choice belongs to no deep-linking launch of yours. Start again from the LMS.")
    try:
        message = conf.cached_launch(request, launch_id)
        claims = dict(message.get_launch_data())
        deep_link = message.get_deep_link()
    except LtiException as exc:
        return _refuse(request, f"The deep-linking launch has expired ({exc}). Start again from the LMS.")
    identity = LtiIdentity.objects.filter(user_id=request.user.pk or 0).first()
    if (
        identity is None
        or (identity.issuer, identity.sub) != (claims.get("iss"), claims.get("sub"))
        or services.role_for(claims.get(services.ROLES_CLAIM)) != INSTRUCTOR
        or not message.is_deep_link_launch()
    ):
        return _refuse(request, "Only the instructor who started this deep-linking launch may answer it.", status=403)
    target = services.target_parse(request.POST.get("target", ""))
    if target is None:
        return _refuse(request, "Choose a course, module or lab that exists.")
    resource = (
        DeepLinkResource()
        .set_url(_launch_url(request))
        .set_title(target.title[:200])
        .set_custom_params({"target": target.key})
    )
    if target.lab is not None:
        total = target.lab.exercises.filter(archived_at__isnull=True).count()
        if total:
            resource.set_lineitem(
                LineItem()
                .set_score_maximum(total)
                .set_label(target.title[:200])
                .set_resource_id(f"lab-{target.lab.pk}")
                .set_tag(services.LINEITEM_TAG)
            )
    token = deep_link.get_response_jwt([resource])
    del request.session[DEEP_LINK_SESSION_KEY]
    settings_claim: Any = claims.get("https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings") or {}
    return_url = settings_claim.get("deep_link_return_url", "")
    if not isinstance(return_url, str) or urlsplit(return_url).scheme not in ("https", "http"):
        # a form posting to javascript: or data: would run on this site's origin
        return _refuse(request, "The LMS gave no usable deep-linking return address (http or https).")
    return render(
        request,
        "lti/deep_link_return.html",
        {"return_url": return_url, "jwt": token, "title": target.title},
    )


@require_GET
def jwks(request: HttpRequest) -> JsonResponse:
    """The tool's public keys (the platform verifies our service and deep-linking JWTs with them)."""
    response = JsonResponse(keys.jwks())
    response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"
    return response


@login_required
def classes(request: HttpRequest) -> HttpResponse:
    """The LMS courses this instructor teaches through LTI, with the roster import."""
    found = services.contexts_for_instructor(user=request.user)
    if not found and not request.user.is_superuser:
        raise Http404("You teach no LMS course through LTI.")
    return render(request, "lti/classes.html", {"contexts": found})


@login_required
@require_POST
def roster_import(request: HttpRequest, context_id: int) -> HttpResponse:
    context = services.context_for_instructor(user=request.user, context_id=context_id)
    if context is None:
        raise Http404("No such LMS course, or not one you teach.")
    try:
        result = services.roster_import(context=context)
    except services.LaunchRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Roster imported: {result.enrolled} enrolled ({result.created} new accounts), "
            f"{result.inactive} inactive in the LMS.",
        )
    return redirect("lti:classes")
