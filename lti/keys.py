"""The tool's own RSA keys: generated on first need, rotated on request.

The newest unretired key signs (service token requests, deep-linking
responses). Rotating makes a new key and retires the others; a retired key
stays in the published JWKS for ``KEY_RETENTION`` so a platform that cached
the set, or a message signed just before, still verifies.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import transaction
from django.utils import timezone
from jwcrypto.jwk import JWK

from lti.models import ToolKey

KEY_BITS = 2048
KEY_RETENTION = timedelta(days=7)


def _new_key() -> ToolKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    jwk = JWK.from_pem(pem.encode())
    public: dict[str, Any] = json.loads(jwk.export_public())
    kid = jwk.thumbprint()
    public.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return ToolKey.objects.create(kid=kid, private_key=pem, public_jwk=public)


@transaction.atomic
def tool_key_rotate() -> ToolKey:
    """Make a new signing key and retire every other one."""
    key = _new_key()
    ToolKey.objects.filter(retired_at__isnull=True).exclude(pk=key.pk).update(retired_at=timezone.now())
    return key


def signing_key() -> ToolKey:
    """The key that signs now (made on first use)."""
    key = ToolKey.objects.filter(retired_at__isnull=True).order_by("-created_at", "-pk").first()
    if key is not None:
        return key
    with transaction.atomic():
        key = ToolKey.objects.select_for_update().filter(retired_at__isnull=True).first()
        return key if key is not None else _new_key()


def jwks() -> dict[str, list[dict[str, Any]]]:
    """The public key set served at /lti/jwks.json."""
    signing_key()
    return {"keys": [dict(k.public_jwk) for k in ToolKey.objects.published()]}
