"""docker-compose.yml is valid (checked offline by docker-compose itself) and runs only what our code has."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
OURS = ("gateway", "worker")


def test_compose_file_passes_docker_compose_config():
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing: .ci/run installs Debian's docker-compose package")
        pytest.skip("docker-compose not installed here (CI installs it)")
    secrets = {"REDIS_PASSWORD": "redis-secret", "POSTGRES_PASSWORD": "postgres-secret"}
    result = subprocess.run([binary, "config", "-q"], check=False, cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**os.environ, **secrets})
    assert result.returncode == 0, result.stderr
    # Without the passwords the stack refuses to start rather than run Redis or PostgreSQL open.
    bare = {k: v for k, v in os.environ.items() if k not in secrets}
    refused = subprocess.run([binary, "config", "-q"], check=False, cwd=REPO, capture_output=True, text=True, timeout=60, env=bare)
    assert refused.returncode != 0 and "REDIS_PASSWORD" in refused.stderr


def test_redis_keeps_writes_with_aof_and_services_have_health_checks():
    assert "--appendonly" in COMPOSE["services"]["redis"]["command"]
    assert "healthcheck" in COMPOSE["services"]["redis"] and "healthcheck" in COMPOSE["services"]["gateway"]


def test_redis_requires_a_password_from_the_environment_and_every_client_sends_it():
    command = COMPOSE["services"]["redis"]["command"]
    assert command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    for service in OURS:
        assert COMPOSE["services"][service]["environment"]["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD")


def test_postgres_is_the_store_of_record_with_a_volume_and_a_health_check():
    postgres = COMPOSE["services"]["postgres"]
    assert postgres["image"] == "postgres:16" and "pg_isready" in postgres["healthcheck"]["test"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    for service in OURS:
        assert COMPOSE["services"][service]["environment"]["GATEWAY_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert COMPOSE["services"][service]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_only_the_gateway_is_published_on_all_interfaces():
    for name, service in COMPOSE["services"].items():
        for port in service.get("ports", []):
            if name != "gateway":
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def _code_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for folder in ("service", "workers", "store", "mappings")
                     for p in (REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("service", OURS)
def test_every_environment_variable_of_our_services_is_read_by_our_code(service):
    code = _code_text()
    for name in COMPOSE["services"][service].get("environment", {}):
        assert f'"{name}"' in code, f"{service}: {name} is set in docker-compose.yml but read nowhere"


@pytest.mark.parametrize("service", OURS)
def test_every_command_of_our_services_exists(service):
    command = COMPOSE["services"][service]["command"]
    if command[0] == "gunicorn":
        module, _, attribute = command[-1].partition(":")
        spec = importlib.util.find_spec(module)
        assert spec is not None and f"{attribute} = " in Path(spec.origin).read_text(encoding="utf-8")
    else:
        assert command[:2] == ["python", "-m"]
        assert importlib.util.find_spec(f"{command[2]}.__main__") is not None, f"python -m {command[2]} has no __main__"
