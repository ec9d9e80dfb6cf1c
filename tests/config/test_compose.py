"""docker-compose.yml cannot be built here (no image registry is reachable),
so it is checked statically: the services exist, and every environment
variable it sets is one the settings actually read."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from config import env

BASE = Path(__file__).resolve().parents[2]
# Read by docker compose itself, not by the platform.
COMPOSE_ONLY = {"POSTGRES_PASSWORD"}
# Read by runtimed (runtime/ imports no Django, so not through config.env).
RUNTIME_ONLY = {"RUNTIME_SOCKET_GROUP"}


def compose() -> dict:
    return yaml.safe_load((BASE / "docker-compose.yml").read_text())


def test_compose_has_every_process_of_the_platform() -> None:
    services = compose()["services"]
    assert {"web", "worker", "beat", "runtimed", "redis", "postgres"} <= set(services)
    for name in ("web", "redis", "postgres", "runtimed"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    assert services["runtimed"].get("privileged") is True


def _variables_set(service: dict, env_file: dict[str, str]) -> set[str]:
    names = set(env_file)
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        names |= {item.split("=", 1)[0] for item in environment}
    else:
        names |= set(environment)
    return names


def test_every_variable_compose_sets_is_read_by_the_settings() -> None:
    import django.conf

    django.conf.settings.INSTALLED_APPS  # noqa: B018 - make sure settings were read
    known = set(env.READ) | {f"{name}_FILE" for name in env.READ}
    env_example = {
        line.split("=", 1)[0]
        for line in (BASE / ".env.example").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    for name, service in compose()["services"].items():
        if name in {"redis", "postgres"}:
            continue
        unknown = _variables_set(service, {}) - known - RUNTIME_ONLY
        assert not unknown, f"{name} sets variables the settings never read: {unknown}"
    assert env_example - known - COMPOSE_ONLY == set(), (
        f".env.example has unknown variables: {env_example - known - COMPOSE_ONLY}"
    )


def test_readme_documents_every_variable() -> None:
    import django.conf

    django.conf.settings.INSTALLED_APPS  # noqa: B018
    readme = (BASE / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    assert set(env.READ) - documented == set(), f"undocumented: {set(env.READ) - documented}"
