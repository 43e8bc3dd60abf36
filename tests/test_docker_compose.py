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
    result = subprocess.run([binary, "config", "-q"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_redis_keeps_writes_with_aof_and_services_have_health_checks():
    assert "--appendonly" in COMPOSE["services"]["redis"]["command"]
    assert "healthcheck" in COMPOSE["services"]["redis"] and "healthcheck" in COMPOSE["services"]["gateway"]


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
