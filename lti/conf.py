"""PyLTI1p3 wired to our models, with the checks the library leaves out.

The library does the OIDC dance, the JWKS fetch and the claim validators. On
top of it this module:

- finds registrations and deployments in the database (``DbToolConf``);
- keeps the login → launch state in the database, keyed by a per-browser
  cookie id (``DbLaunchDataStorage``), so any web process can finish a launch
  another one started;
- verifies the id_token's audience (the library turns ``aud`` checking off),
  ``azp`` when there are several audiences, the issuer, ``exp``/``iat``, and
  accepts RS256 only (``ToolMessageLaunch.validate_jwt_signature``);
- binds the state to the registration that started the login, so a token
  from another registration cannot finish it;
- makes every nonce single-use (the library accepts a replayed id_token in
  the same browser), and gives every outbound request a timeout.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import jwt
import requests
from django.db import IntegrityError, transaction
from django.utils import timezone
from pylti1p3.contrib.django import DjangoMessageLaunch, DjangoOIDCLogin
from pylti1p3.contrib.django.request import DjangoRequest
from pylti1p3.deployment import Deployment as LibDeployment
from pylti1p3.exception import LtiException
from pylti1p3.launch_data_storage.base import LaunchDataStorage
from pylti1p3.registration import Registration
from pylti1p3.service_connector import ServiceConnector
from pylti1p3.tool_config.abstract import ToolConfAbstract

from lti import keys
from lti.models import Deployment, LtiNonce, LtiStateValue, Platform

HTTP_TIMEOUT = 10.0  # seconds, every request to a platform
JWT_LEEWAY = 10  # seconds of clock skew tolerated on exp / iat
JWKS_CACHE = 300  # seconds a platform's key set is reused between launches
STATE_PARAM_PLATFORM = "platform"


class TimeoutSession(requests.Session):
    """A requests session whose every call has a timeout (the library passes none)."""

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        kwargs.setdefault("allow_redirects", False)
        return super().request(method, url, *args, **kwargs)


def http_session() -> requests.Session:
    session = TimeoutSession()
    session.headers["User-Agent"] = "KubeLab-LTI (PyLTI1p3)"
    return session


class ToolRegistration(Registration):
    """A registration whose tool key is our current ``ToolKey``."""

    platform: Platform

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        key = keys.signing_key()
        self._kid = key.kid
        self._jwk = dict(key.public_jwk)
        (
            self.set_issuer(platform.issuer)
            .set_client_id(platform.client_id)
            .set_auth_login_url(platform.auth_login_url)
            .set_auth_token_url(platform.auth_token_url)
            .set_key_set_url(platform.key_set_url)
            .set_tool_private_key(key.private_key)
        )
        if platform.auth_audience:
            self.set_auth_audience(platform.auth_audience)

    def get_kid(self) -> str | None:
        return self._kid

    def get_jwks(self) -> list[Any]:
        return [self._jwk]


class DbToolConf(ToolConfAbstract[DjangoRequest]):
    """Registrations from ``lti.models.Platform``; several client ids per issuer allowed."""

    def check_iss_has_one_client(self, iss: str) -> bool:
        return False

    def check_iss_has_many_clients(self, iss: str) -> bool:
        return True

    def platform(self, iss: str, client_id: str | None) -> Platform | None:
        found = Platform.objects.filter(issuer=iss, active=True)
        if client_id:
            return found.filter(client_id=client_id).first()
        # OIDC login may omit client_id; only unambiguous then.
        candidates = list(found[:2])
        return candidates[0] if len(candidates) == 1 else None

    def find_registration_by_issuer(self, iss: str, *args: Any, **kwargs: Any) -> Registration:
        raise NotImplementedError("every issuer may have several client ids here")

    def find_registration_by_params(self, iss: str, client_id: str, *args: Any, **kwargs: Any) -> Registration:
        platform = self.platform(iss, client_id)
        return ToolRegistration(platform) if platform is not None else None  # type: ignore[return-value]

    def find_deployment(self, iss: str, deployment_id: str) -> LibDeployment | None:
        raise NotImplementedError("every issuer may have several client ids here")

    def find_deployment_by_params(
        self, iss: str, deployment_id: str, client_id: str, *args: Any, **kwargs: Any
    ) -> LibDeployment | None:
        platform = self.platform(iss, client_id)
        if platform is None or not Deployment.objects.filter(platform=platform, deployment_id=deployment_id).exists():
            return None
        return LibDeployment().set_deployment_id(deployment_id)


class DbLaunchDataStorage(LaunchDataStorage[Any]):
    """Key/value storage with expiry in ``LtiStateValue``.

    Unlike the library's cache storage, the per-browser cookie id is required
    over plain HTTP too: without it any browser that learns a launch id could
    read that launch's data."""

    def can_set_keys_expiration(self) -> bool:
        return True

    def get_value(self, key: str) -> Any:
        row = LtiStateValue.objects.filter(key=self._prepare_key(key)[:255], expires_at__gt=timezone.now()).first()
        return None if row is None else row.value

    def set_value(self, key: str, value: Any, exp: int | None = None) -> None:
        lifetime = exp if exp is not None else 86400
        LtiStateValue.objects.update_or_create(
            key=self._prepare_key(key)[:255],
            defaults={"value": value, "expires_at": timezone.now() + timedelta(seconds=lifetime)},
        )

    def check_value(self, key: str) -> bool:
        return LtiStateValue.objects.filter(key=self._prepare_key(key)[:255], expires_at__gt=timezone.now()).exists()


def state_storage() -> DbLaunchDataStorage:
    return DbLaunchDataStorage()


class ToolOIDCLogin(DjangoOIDCLogin):
    pass


class ToolMessageLaunch(DjangoMessageLaunch):
    """A launch validated as the LTI Security Framework asks (see the module docstring)."""

    def validate(self) -> ToolMessageLaunch:
        # The library's order, with our two checks before the launch is saved for later requests.
        if self._restored:
            raise LtiException("Can't validate restored launch")
        self._validated = True
        try:
            self.validate_state().validate_jwt_format().validate_nonce().validate_registration()
            self.validate_jwt_signature().validate_deployment().validate_message()
            self._check_state_platform()
            self._consume_nonce()
            self.save_launch_data()
        except Exception:
            self._validated = False
            raise
        return self

    def get_client_id(self) -> str:
        # Several audiences: the tool is the one named by azp (the library takes aud[0]).
        body = self._get_jwt_body()
        aud: Any = body.get("aud")
        if isinstance(aud, list):
            azp = body.get("azp")
            return azp if isinstance(azp, str) and azp in aud else (str(aud[0]) if aud else "")
        return str(aud or "")

    def registration(self) -> ToolRegistration:
        assert isinstance(self._registration, ToolRegistration)
        return self._registration

    def get_public_key(self) -> tuple[str, str]:
        """The platform's key for this token, from a key set cached for JWKS_CACHE; a key id
        missing from the cached set (the platform rotated) fetches the set again once."""
        registration = self.registration()
        url = registration.get_key_set_url() or ""
        cache_key = "jwks:" + hashlib.sha256(url.encode()).hexdigest()
        storage = DbLaunchDataStorage()
        cached = storage.get_value(cache_key)
        try:
            if isinstance(cached, dict):
                registration.set_key_set(cached)  # type: ignore[arg-type]
                try:
                    return super().get_public_key()
                except LtiException:
                    registration.set_key_set(None)
            found = super().get_public_key()
        except (KeyError, TypeError, AttributeError) as exc:
            raise LtiException(f"the platform's key set at {url} is not a JWKS") from exc
        storage.set_value(cache_key, registration.get_key_set(), exp=JWKS_CACHE)
        return found

    def validate_jwt_signature(self) -> ToolMessageLaunch:
        registration = self.registration()
        public_key, alg = self.get_public_key()
        if alg != "RS256":
            raise LtiException(f"The id_token is signed with {alg}; LTI 1.3 requires RS256")
        client_id = registration.get_client_id()
        try:
            body = jwt.decode(
                self._get_id_token(),
                public_key,
                algorithms=["RS256"],
                audience=client_id,
                issuer=registration.get_issuer(),
                leeway=JWT_LEEWAY,
                options={"require": ["exp", "iat", "iss", "aud", "nonce"]},
            )
        except jwt.InvalidTokenError as exc:
            raise LtiException(f"The id_token was refused: {exc}") from exc
        aud = body.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and body.get("azp") != client_id:
            raise LtiException("The id_token has several audiences and its azp is not this tool")
        if "azp" in body and body["azp"] != client_id:
            raise LtiException("The id_token's azp is not this tool")
        # What the rest of the launch reads is the verified body, never the unverified decode.
        self._jwt["body"] = body  # type: ignore[typeddict-item]
        return self

    def _check_state_platform(self) -> None:
        params = self.get_params_from_login() or {}
        if params.get(STATE_PARAM_PLATFORM) != self.registration().platform.pk:
            raise LtiException("This launch does not finish the login this browser started (another registration)")

    def _consume_nonce(self) -> None:
        body = self._get_jwt_body()
        try:
            with transaction.atomic():
                LtiNonce.objects.create(issuer=str(body.get("iss", ""))[:255], nonce=str(body.get("nonce", ""))[:255])
        except IntegrityError:
            raise LtiException("This launch was already used (replayed nonce)") from None


def tool_conf() -> DbToolConf:
    return DbToolConf()


def new_launch(request: Any) -> ToolMessageLaunch:
    if not request.COOKIES.get("lti1p3-session-id"):
        raise LtiException(
            "this browser did not send the cookie set when the launch started: it blocks third-party cookies "
            "in the LMS's frame, or the launch started in another browser (open the activity in a new window)"
        )
    return ToolMessageLaunch(request, tool_conf(), launch_data_storage=state_storage(), requests_session=http_session())


def cached_launch(request: Any, launch_id: str) -> ToolMessageLaunch:
    launch = ToolMessageLaunch.from_cache(
        launch_id, request, tool_conf(), launch_data_storage=state_storage(), requests_session=http_session()
    )
    assert isinstance(launch, ToolMessageLaunch)
    return launch


def new_login(request: Any) -> ToolOIDCLogin:
    return ToolOIDCLogin(request, tool_conf(), launch_data_storage=state_storage())


def service_connector(platform: Platform) -> ServiceConnector:
    """A connector for the platform's services (AGS, NRPS) outside any request."""
    return ServiceConnector(ToolRegistration(platform), http_session())


def expire_state() -> int:
    """Delete expired login state, and nonces older than any id_token we accept could be
    (the state holding a nonce lives a day; a nonce is remembered for two)."""
    now = timezone.now()
    gone, _ = LtiStateValue.objects.filter(expires_at__lt=now).delete()
    old, _ = LtiNonce.objects.filter(used_at__lt=now - timedelta(days=2)).delete()
    return gone + old
