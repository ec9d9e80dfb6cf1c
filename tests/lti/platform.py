"""A small LTI 1.3 platform (an LMS) for the tests, over real HTTP on localhost.

It is written from the IMS specifications (LTI Core 1.3, the Security
Framework, AGS 2.0, NRPS 2.0, Deep Linking 2.0), not from our tool:

- ``GET /jwks``: its public RSA key set (the tool fetches it to verify launches);
- ``GET /auth``: the OIDC authorization endpoint. It checks the tool's
  authentication request (client id, registered redirect URI, scope,
  response_type, response_mode, prompt, nonce, login_hint) and answers with the
  form_post page carrying a signed id_token and the state, as an LMS does;
- ``POST /token``: OAuth2 client credentials with a JWT assertion the tool signs
  with its key, verified against the tool's JWKS (fetched by the test from
  ``/lti/jwks.json`` and handed over, since the tool runs in the test client);
- ``/lineitems`` (GET with ``resource_id`` filter, POST to create) and
  ``/lineitems/<n>/scores`` (POST): AGS, keeping each (line item, user) result
  only when its timestamp is newer, as the spec tells a platform to;
- ``GET /memberships``: NRPS, two pages joined by a ``Link: rel="next"`` header.

Everything received is recorded for the tests to assert on.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwcrypto.jwk import JWK

LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
LEARNER = [LIS + "membership#Learner", LIS + "institution/person#Student"]
INSTRUCTOR = [LIS + "membership#Instructor", LIS + "institution/person#Faculty"]
C = "https://purl.imsglobal.org/spec/lti/claim/"
AGS = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
DL_SETTINGS = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"
SCOPES = [
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
]


def rsa_key() -> tuple[str, dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    jwk = JWK.from_pem(pem.encode())
    public = json.loads(jwk.export_public())
    public.update({"kid": jwk.thumbprint(), "alg": "RS256", "use": "sig"})
    return pem, public


@dataclass
class Pending:
    """What the platform will put in the id_token of one login (by login_hint)."""

    claims: dict[str, Any]
    key: str | None = None  # sign with another key (bad signature)
    kid: str | None = None
    drop: tuple[str, ...] = ()


@dataclass
class Score:
    lineitem: str
    body: dict[str, Any]
    kept: bool


@dataclass
class LMS:
    issuer: str = ""
    client_id: str = "tool-client-1"
    deployment_id: str = "deployment-1"
    base: str = ""
    private_pem: str = ""
    public_jwk: dict[str, Any] = field(default_factory=dict)
    tool_jwks: dict[str, Any] = field(default_factory=dict)
    redirect_uris: tuple[str, ...] = ("http://testserver/lti/launch/", "https://testserver/lti/launch/")
    pending: dict[str, Pending] = field(default_factory=dict)
    tokens: dict[str, list[str]] = field(default_factory=dict)
    lineitems: list[dict[str, Any]] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    results: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    members: list[dict[str, Any]] = field(default_factory=list)
    auth_requests: list[dict[str, str]] = field(default_factory=list)
    fail_scores: int = 0  # answer the next N score posts with 503
    next_link: str = ""
    deleted: set[str] = field(default_factory=set)
    jwks_fetches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- what a test calls ----------------------------------------------------------------

    def claims(
        self,
        *,
        sub: str,
        roles: list[str],
        context: str = "course-101",
        link: str = "link-1",
        target: str | None = None,
        message: str = "LtiResourceLinkRequest",
        **extra: Any,
    ) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.client_id,
            "sub": sub,
            "given_name": f"Given {sub}",
            "family_name": f"Family {sub}",
            "name": f"Given {sub} Family {sub}",
            "email": f"{sub}@lms.example",
            C + "message_type": message,
            C + "version": "1.3.0",
            C + "deployment_id": self.deployment_id,
            C + "target_link_uri": self.redirect_uris[0],
            C + "roles": roles,
            C + "context": {"id": context, "title": f"LMS {context}", "label": context.upper()},
            AGS: {"scope": SCOPES, "lineitems": f"{self.base}/lineitems"},
            NRPS: {"context_memberships_url": f"{self.base}/memberships", "service_versions": ["2.0"]},
        }
        if message == "LtiResourceLinkRequest":
            claims[C + "resource_link"] = {"id": link, "title": f"Link {link}"}
        if message == "LtiDeepLinkingRequest":
            claims[DL_SETTINGS] = {
                "deep_link_return_url": f"{self.base}/deep-link-return",
                "accept_types": ["ltiResourceLink"],
                "accept_presentation_document_targets": ["iframe", "window"],
                "accept_multiple": False,
                "data": "opaque-platform-data",
            }
        if target is not None:
            claims[C + "custom"] = {"target": target}
        claims.update(extra)
        return claims

    def prepare(self, claims: dict[str, Any], **how: Any) -> str:
        hint = uuid.uuid4().hex
        self.pending[hint] = Pending(claims=claims, **how)
        return hint

    def sign(self, claims: dict[str, Any], *, key: str | None = None, kid: str | None = None) -> str:
        return jwt.encode(
            claims, key or self.private_pem, algorithm="RS256", headers={"kid": kid or self.public_jwk["kid"]}
        )

    def rotate_key(self) -> None:
        """The LMS replaces its signing key (and publishes only the new one)."""
        self.private_pem, self.public_jwk = rsa_key()

    def delete_lineitem(self, url: str) -> None:
        """An instructor deletes the gradebook column in the LMS."""
        self.lineitems = [i for i in self.lineitems if i["id"] != url]
        self.deleted.add(url)

    def kept_results(self) -> dict[str, dict[str, Any]]:
        """Each user's current result, over all line items: {user_id: score body}."""
        return {user: body for (_, user), body in self.results.items()}

    # --- the HTTP side -----------------------------------------------------------------------

    def _auth(self, query: dict[str, str]) -> tuple[int, str, str]:
        self.auth_requests.append(query)
        problems = []
        expected = {
            "scope": "openid",
            "response_type": "id_token",
            "response_mode": "form_post",
            "prompt": "none",
            "client_id": self.client_id,
        }
        for name, value in expected.items():
            if query.get(name) != value:
                problems.append(f"{name}={query.get(name)!r}")
        if query.get("redirect_uri") not in self.redirect_uris:
            problems.append(f"redirect_uri {query.get('redirect_uri')!r} not registered")
        if not query.get("nonce") or not query.get("state"):
            problems.append("no nonce or state")
        pending = self.pending.pop(query.get("login_hint", ""), None)
        if pending is None:
            problems.append("unknown login_hint")
        if problems:
            return 400, "text/plain", "invalid_request: " + ", ".join(problems)
        assert pending is not None
        now = int(time.time())
        claims = {"iat": now, "exp": now + 300, "nonce": query["nonce"], **pending.claims}
        for name in pending.drop:
            claims.pop(name, None)
        token = self.sign(claims, key=pending.key, kid=pending.kid)
        page = (
            f'<form method="post" action="{html.escape(query["redirect_uri"])}">'
            f'<input type="hidden" name="id_token" value="{html.escape(token)}">'
            f'<input type="hidden" name="state" value="{html.escape(query["state"])}"></form>'
        )
        return 200, "text/html", page

    def _token(self, form: dict[str, str]) -> tuple[int, str, str]:
        if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return 400, "application/json", json.dumps({"error": "unsupported_grant_type"})
        assertion = form.get("client_assertion", "")
        try:
            kid = jwt.get_unverified_header(assertion).get("kid")
            key = next(k for k in self.tool_jwks.get("keys", []) if k.get("kid") == kid)
            body = jwt.decode(
                assertion,
                jwt.PyJWK(key).key,
                algorithms=["RS256"],
                audience=f"{self.base}/token",
                options={"require": ["exp", "iat", "jti", "iss", "sub"]},
            )
        except (jwt.InvalidTokenError, StopIteration, ValueError) as exc:
            return 401, "application/json", json.dumps({"error": "invalid_client", "why": str(exc)})
        if body["iss"] != self.client_id or body["sub"] != self.client_id:
            return 401, "application/json", json.dumps({"error": "invalid_client"})
        token = secrets.token_hex(16)
        self.tokens[token] = form.get("scope", "").split()
        return 200, "application/json", json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def _authorized(self, header: str, scope: str) -> bool:
        token = header.removeprefix("Bearer ")
        return scope in self.tokens.get(token, [])

    def handle(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes) -> tuple[int, str, str]:
        if method == "GET" and path == "/jwks":
            self.jwks_fetches += 1
            return 200, "application/json", json.dumps({"keys": [self.public_jwk]})
        if method == "GET" and path == "/auth":
            return self._auth(query)
        if method == "POST" and path == "/token":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            return self._token(form)
        auth = headers.get("Authorization", "")
        if path == "/lineitems":
            if not self._authorized(auth, SCOPES[0]):
                return 401, "application/json", "{}"
            if method == "GET":
                items = [i for i in self.lineitems if query.get("resource_id") in (None, i.get("resourceId"))]
                return 200, "application/vnd.ims.lis.v2.lineitemcontainer+json", json.dumps(items)
            if headers.get("Content-Type") != "application/vnd.ims.lis.v2.lineitem+json":
                return 415, "text/plain", "wrong content type"
            item = json.loads(body)
            item["id"] = f"{self.base}/lineitems/{len(self.lineitems) + len(self.deleted) + 1}"
            self.lineitems.append(item)
            return 201, "application/vnd.ims.lis.v2.lineitem+json", json.dumps(item)
        match = re.fullmatch(r"/lineitems/(\d+)/scores", path)
        if method == "POST" and match:
            if not self._authorized(auth, SCOPES[2]):
                return 401, "application/json", "{}"
            if headers.get("Content-Type") != "application/vnd.ims.lis.v1.score+json":
                return 415, "text/plain", "wrong content type"
            if self.fail_scores > 0:
                self.fail_scores -= 1
                return 503, "text/plain", "try later"
            score = json.loads(body)
            lineitem = f"{self.base}/lineitems/{match.group(1)}"
            if lineitem in self.deleted:
                return 404, "text/plain", "no such line item"
            key = (lineitem, score["userId"])
            stamp = datetime.fromisoformat(score["timestamp"])
            previous = self.results.get(key)
            kept = previous is None or stamp > datetime.fromisoformat(previous["timestamp"])
            if kept:
                self.results[key] = score
            self.scores.append(Score(lineitem=lineitem, body=score, kept=kept))
            return 200, "application/json", "{}"
        if method == "GET" and path == "/memberships":
            if not self._authorized(auth, "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"):
                return 401, "application/json", "{}"
            page = int(query.get("page", "1"))
            half = (len(self.members) + 1) // 2
            chunk = self.members[:half] if page == 1 else self.members[half:]
            doc = {"id": f"{self.base}/memberships", "context": {"id": "course-101"}, "members": chunk}
            if page == 1:
                self.next_link = f'<{self.base}/memberships?page=2>; rel="next"'
            return 200, "application/vnd.ims.lti-nrps.v2.membershipcontainer+json", json.dumps(doc)
        return 404, "text/plain", "not found"


class _Handler(BaseHTTPRequestHandler):
    lms: LMS

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.lms.lock:
            self.lms.next_link = ""
            status, ctype, text = self.lms.handle(method, parts.path, query, self.headers, body)
            link = self.lms.next_link
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if link:
            self.send_header("Link", link)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


def start(issuer_suffix: str = "") -> tuple[LMS, ThreadingHTTPServer]:
    lms = LMS()
    lms.private_pem, lms.public_jwk = rsa_key()
    handler = type("Handler", (_Handler,), {"lms": lms})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    lms.base = f"http://127.0.0.1:{server.server_address[1]}"
    lms.issuer = lms.base + issuer_suffix
    threading.Thread(target=server.serve_forever, name="test-lms", daemon=True).start()
    return lms, server


def register(lms: LMS, **overrides: Any) -> Any:
    """The LMS's registration in the tool, as an administrator enters it in the admin."""
    from lti.models import Deployment, Platform

    fields = {
        "name": "Test LMS",
        "issuer": lms.issuer,
        "client_id": lms.client_id,
        "auth_login_url": f"{lms.base}/auth",
        "auth_token_url": f"{lms.base}/token",
        "key_set_url": f"{lms.base}/jwks",
        **overrides,
    }
    platform = Platform.objects.create(**fields)
    Deployment.objects.create(platform=platform, deployment_id=lms.deployment_id)
    return platform


@contextlib.contextmanager
def running_lms() -> Iterator[LMS]:
    """A running test LMS registered with the tool, knowing the tool's current JWKS
    (the ``lms`` fixture of tests/lti and tests/security/test_lti_*)."""
    from lti import keys

    platform_lms, server = start()
    register(platform_lms)
    platform_lms.tool_jwks = keys.jwks()
    try:
        yield platform_lms
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SmallCourse:
    course: Any
    module: Any
    lab: Any
    exercises: list[Any]

    @property
    def lab_target(self) -> str:
        return f"lab:{self.course.slug}/{self.module.slug}/{self.lab.slug}"


def small_course() -> SmallCourse:
    """Course k8s → module pods → lab first-pod with two exercises."""
    from tests.factories import CourseFactory, LabFactory, ModuleFactory, StepFactory
    from tests.grader.helpers import ExerciseFactory

    course = CourseFactory.create(slug="k8s", title="Kubernetes")
    module = ModuleFactory.create(course=course, slug="pods", title="Pods")
    lab = LabFactory.create(module=module, slug="first-pod", title="First Pod")
    step = StepFactory.create(lab=lab)
    exercises = [ExerciseFactory.create(step=step, slug=f"ex-{n}") for n in (1, 2)]
    return SmallCourse(course=course, module=module, lab=lab, exercises=exercises)


def launch(client: Any, lms: LMS, claims: dict[str, Any], *, secure: bool = False, **how: Any) -> Any:
    """Drive a whole launch as a browser in the LMS's iframe does: the LMS starts the OIDC
    login at the tool, the tool redirects to the LMS's auth endpoint, the LMS posts the
    signed id_token back to the tool's launch URL. Returns the tool's launch response."""
    import requests

    hint = lms.prepare(claims, **how)
    started = client.post(
        "/lti/login/",
        {
            "iss": lms.issuer,
            "login_hint": hint,
            "target_link_uri": lms.redirect_uris[0],
            "client_id": lms.client_id,
            "lti_deployment_id": lms.deployment_id,
        },
        secure=secure,
    )
    assert started.status_code == 302, started.content[:500]
    answer = requests.get(started["Location"], timeout=10)
    assert answer.status_code == 200, answer.text
    fields = dict(re.findall(r'name="(id_token|state)" value="([^"]*)"', answer.text))
    form = {k: html.unescape(v) for k, v in fields.items()}
    return client.post("/lti/launch/", form, secure=secure)


def id_token_and_state(client: Any, lms: LMS, claims: dict[str, Any], **how: Any) -> dict[str, str]:
    """The first two legs only: what the LMS would post to the tool (for tampering tests)."""
    import requests

    hint = lms.prepare(claims, **how)
    started = client.post(
        "/lti/login/",
        {"iss": lms.issuer, "login_hint": hint, "client_id": lms.client_id, "target_link_uri": lms.redirect_uris[0]},
    )
    assert started.status_code == 302, started.content[:500]
    answer = requests.get(started["Location"], timeout=10)
    assert answer.status_code == 200, answer.text
    fields = dict(re.findall(r'name="(id_token|state)" value="([^"]*)"', answer.text))
    return {k: html.unescape(v) for k, v in fields.items()}
