"""Seal the runtimed tokens at rest (labs.sealed, issue #12): the fields become
SealedTextField and every existing row's plaintext tokens are sealed in place (raw SQL:
the field itself would read a plaintext value as unusable). Reversible: unsealing writes
the plaintext back."""

from __future__ import annotations

from typing import Any

from django.db import migrations

import labs.sealed

FIELDS = ("runtime_token", "grader_token")


def _rewrite(schema_editor: Any, change: Any) -> None:
    conn = schema_editor.connection
    table = conn.ops.quote_name("labs_labsession")
    cols = ", ".join(conn.ops.quote_name(f) for f in FIELDS)
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, {cols} FROM {table}")  # noqa: S608 - fixed names only
        rows = cur.fetchall()
    sets = ", ".join(f"{conn.ops.quote_name(f)} = %s" for f in FIELDS)
    with conn.cursor() as cur:
        for pk, *values in rows:
            new = [change(v or "") for v in values]
            if new != [v or "" for v in values]:
                cur.execute(f"UPDATE {table} SET {sets} WHERE id = %s", [*new, pk])  # noqa: S608


def seal_rows(apps: Any, schema_editor: Any) -> None:
    _rewrite(schema_editor, lambda v: v if labs.sealed.is_sealed(v) else labs.sealed.seal(v))


def unseal_rows(apps: Any, schema_editor: Any) -> None:
    _rewrite(schema_editor, lambda v: labs.sealed.unseal(v) if labs.sealed.is_sealed(v) else v)


class Migration(migrations.Migration):
    dependencies = [
        ("labs", "0005_paused_sessions"),
    ]

    operations = [
        migrations.AlterField(
            model_name="labsession",
            name="runtime_token",
            field=labs.sealed.SealedTextField(blank=True, default="", editable=False),
        ),
        migrations.AlterField(
            model_name="labsession",
            name="grader_token",
            field=labs.sealed.SealedTextField(blank=True, default="", editable=False),
        ),
        migrations.RunPython(seal_rows, unseal_rows),
    ]
