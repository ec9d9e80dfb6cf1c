"""The tool's keys: generated once, served as a public JWKS, rotatable without breaking verifiers."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from django.test import Client
from django.utils import timezone

from lti import keys
from lti.models import ToolKey

pytestmark = pytest.mark.django_db


def test_the_jwks_is_public_and_holds_only_public_keys() -> None:
    response = Client().get("/lti/jwks.json")
    assert response.status_code == 200
    [key] = response.json()["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
    assert Client().get("/lti/jwks.json").json() == response.json()  # generated once, then kept


def test_rotation_signs_with_the_new_key_and_keeps_the_old_one_published_for_a_while() -> None:
    old = keys.signing_key()
    new = keys.tool_key_rotate()
    assert keys.signing_key() == new != old
    published = {k["kid"] for k in Client().get("/lti/jwks.json").json()["keys"]}
    assert published == {old.kid, new.kid}
    # Something signed with the old key just before the rotation still verifies against the set.
    token = jwt.encode({"x": 1}, old.private_key, algorithm="RS256", headers={"kid": old.kid})
    jwk = next(k for k in Client().get("/lti/jwks.json").json()["keys"] if k["kid"] == old.kid)
    assert jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["RS256"]) == {"x": 1}
    ToolKey.objects.filter(pk=old.pk).update(retired_at=timezone.now() - keys.KEY_RETENTION - timedelta(minutes=1))
    assert {k["kid"] for k in Client().get("/lti/jwks.json").json()["keys"]} == {new.kid}


def test_the_admin_rotates_keys(admin_client: Client) -> None:
    first = keys.signing_key()
    response = admin_client.post(
        "/admin/lti/toolkey/", {"action": "rotate", "_selected_action": [first.pk]}, follow=True
    )
    assert response.status_code == 200 and b"New signing key" in response.content
    assert keys.signing_key() != first
    # the private key is never shown
    page = admin_client.get(f"/admin/lti/toolkey/{first.pk}/change/").content.decode()
    assert "PRIVATE KEY" not in page


def test_the_admin_registers_a_platform_with_deployments(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/lti/platform/add/",
        {
            "name": "Moodle",
            "active": "on",
            "issuer": "https://moodle.example.edu",
            "client_id": "abc123",
            "auth_login_url": "https://moodle.example.edu/mod/lti/auth.php",
            "auth_token_url": "https://moodle.example.edu/mod/lti/token.php",
            "key_set_url": "https://moodle.example.edu/mod/lti/certs.php",
            "frame_origins": "https://moodle.example.edu",
            "deployments-TOTAL_FORMS": "1",
            "deployments-INITIAL_FORMS": "0",
            "deployments-MIN_NUM_FORMS": "0",
            "deployments-MAX_NUM_FORMS": "1000",
            "deployments-0-deployment_id": "7",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    from lti.models import Platform

    platform = Platform.objects.get(client_id="abc123")
    assert list(platform.deployments.values_list("deployment_id", flat=True)) == ["7"]
    bad = admin_client.post(
        f"/admin/lti/platform/{platform.pk}/change/",
        {
            "name": "Moodle",
            "issuer": platform.issuer,
            "client_id": "abc123",
            "auth_login_url": platform.auth_login_url,
            "auth_token_url": platform.auth_token_url,
            "key_set_url": platform.key_set_url,
            "frame_origins": "https://x.example/path *",
            "deployments-TOTAL_FORMS": "0",
            "deployments-INITIAL_FORMS": "0",
            "deployments-MIN_NUM_FORMS": "0",
            "deployments-MAX_NUM_FORMS": "1000",
        },
    )
    assert bad.status_code == 200 and b"is not an origin" in bad.content


def test_the_rotate_command() -> None:
    from io import StringIO

    from django.core.management import call_command

    first = keys.signing_key()
    out = StringIO()
    call_command("lti_rotate_key", stdout=out)
    assert keys.signing_key() != first and keys.signing_key().kid in out.getvalue()
