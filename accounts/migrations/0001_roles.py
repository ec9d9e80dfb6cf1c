"""Create the two role groups, ``student`` and ``instructor``."""

from __future__ import annotations

from typing import Any

from django.db import migrations

ROLES = ("student", "instructor")  # frozen copy of accounts.roles.ROLES


def create_roles(apps: Any, schema_editor: Any) -> None:
    group_model = apps.get_model("auth", "Group")
    for name in ROLES:
        group_model.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]

    # Going back leaves the groups alone: they may carry memberships an admin
    # granted, and they are harmless without this app.
    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
