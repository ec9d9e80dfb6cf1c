"""runtimed tokens are sealed at rest (issue #12): a database-only leak yields nothing usable.

The raw row (read with SQL, as a leaked dump would show it) holds neither token nor any
part of it; the model reads them back; another SECRET_KEY cannot open them (and a rotated
key still can, through SECRET_KEY_FALLBACKS); the migration seals rows written before it.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from labs import sealed
from labs.models import LabSession
from tests.factories import LabFactory, StudentFactory

pytestmark = pytest.mark.django_db

WEB = "kls1.eyJzaWQiOiJhYmMiLCJyb2xlIjoid2ViIn0.c2lnbmF0dXJlLW9mLXRoZS13ZWItdG9rZW4"
GRADER = "kls1.eyJzaWQiOiJhYmMiLCJyb2xlIjoiZ3JhZGVyIn0.Z3JhZGVyLXNpZ25hdHVyZQ"


def make(**kw: Any) -> LabSession:
    user: Any = StudentFactory()
    lab: Any = LabFactory()
    return LabSession.objects.create(user=user, lab=lab, expires_at=timezone.now() + timedelta(hours=1), **kw)


def raw_row(pk: Any) -> tuple[str, str]:
    with connection.cursor() as cur:
        cur.execute("SELECT runtime_token, grader_token FROM labs_labsession WHERE id = %s", [pk.hex])
        rows = cur.fetchall()
    if not rows:  # backends that store uuids natively
        with connection.cursor() as cur:
            cur.execute("SELECT runtime_token, grader_token FROM labs_labsession WHERE id = %s", [pk])
            rows = cur.fetchall()
    assert len(rows) == 1
    return rows[0][0], rows[0][1]


def test_the_raw_row_holds_no_usable_token_and_the_model_reads_them_back() -> None:
    s = make(runtime_token=WEB, grader_token=GRADER)
    web_raw, grader_raw = raw_row(s.pk)
    for raw, token in ((web_raw, WEB), (grader_raw, GRADER)):
        assert raw.startswith(sealed.PREFIX), raw
        for part in token.split("."):
            assert part not in raw, f"{part!r} readable in the raw row"
    assert web_raw != grader_raw
    again = LabSession.objects.get(pk=s.pk)
    assert (again.runtime_token, again.grader_token) == (WEB, GRADER)
    # .update() goes through the field too
    LabSession.objects.filter(pk=s.pk).update(runtime_token=GRADER)
    assert WEB.split(".")[2] not in raw_row(s.pk)[0]
    assert LabSession.objects.get(pk=s.pk).runtime_token == GRADER


def test_no_token_stays_empty_so_has_a_token_queries_work() -> None:
    s = make()
    assert raw_row(s.pk) == ("", "")
    assert LabSession.objects.filter(pk=s.pk, runtime_token="").exists()


def test_another_secret_key_opens_nothing_and_a_rotated_key_still_does(settings: Any) -> None:
    s = make(runtime_token=WEB, grader_token=GRADER)
    old = settings.SECRET_KEY
    settings.SECRET_KEY = "an attacker's guess, not this site's key"
    assert LabSession.objects.get(pk=s.pk).runtime_token == ""  # unusable, not garbage
    settings.SECRET_KEY_FALLBACKS = [old]
    assert LabSession.objects.get(pk=s.pk).grader_token == GRADER


def test_a_row_written_around_the_field_in_plaintext_is_not_trusted() -> None:
    s = make()
    with connection.cursor() as cur:
        cur.execute("UPDATE labs_labsession SET runtime_token = %s", [WEB])
    assert LabSession.objects.get(pk=s.pk).runtime_token == ""


def test_the_migration_seals_existing_plaintext_rows_and_reverses() -> None:
    s = make()
    with connection.cursor() as cur:
        cur.execute("UPDATE labs_labsession SET runtime_token = %s, grader_token = %s", [WEB, GRADER])
    mig = importlib.import_module("labs.migrations.0006_sealed_runtime_tokens")
    editor = SimpleNamespace(connection=connection)  # what RunPython's schema editor offers it
    mig.seal_rows(None, editor)
    web_raw, grader_raw = raw_row(s.pk)
    assert sealed.is_sealed(web_raw) and sealed.is_sealed(grader_raw)
    assert WEB not in web_raw and GRADER not in grader_raw
    mig.seal_rows(None, editor)  # idempotent: sealed rows are not sealed twice
    assert LabSession.objects.get(pk=s.pk).runtime_token == WEB
    mig.unseal_rows(None, editor)
    assert raw_row(s.pk) == (WEB, GRADER)
