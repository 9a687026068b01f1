"""docker-compose.yml and the Dockerfile agree with the code (there is no Docker engine here).

Checked: every PAYOPS_* variable is a Settings field; api/worker/migrate reach PostgreSQL, Redis
and Temporal by compose service names that exist, with matching credentials and ports; the
published ports; healthchecks wherever a service_healthy dependency needs one; a scalable worker;
the commands name modules/commands that exist; the registered search attributes are
core.platform.names.SEARCH_ATTRIBUTES; the compose defaults are settings payops accepts.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from core.platform.names import SEARCH_ATTRIBUTES
from core.platform.settings import DEV_BANK_WEBHOOK_SECRET, Settings, settings_field_env_names

ROOT = Path(__file__).resolve().parent.parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
APP_SERVICES = ("api", "worker", "migrate")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value):
    """Compose interpolation with nothing set in the environment: ${X:-default} -> default."""
    if not isinstance(value, str):
        return value
    value = value.replace("$$", "\0")
    value = INTERPOLATION.sub(lambda m: m.group(2) or "", value)
    return value.replace("\0", "$")


def env_of(service: str) -> dict[str, str | None]:
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: interpolate(str(v)) if v is not None else None for k, v in env.items()}


def depends_on(service: str) -> dict[str, str]:
    deps = SERVICES[service].get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def command_of(service: str) -> list[str]:
    cmd = SERVICES[service].get("command")
    if cmd is None:
        return dockerfile_instruction("CMD")
    return [interpolate(str(c)) for c in cmd] if isinstance(cmd, list) else interpolate(cmd).split()


def dockerfile_instruction(name: str) -> list[str]:
    """The exec-form (JSON array) arguments of the last instruction `name` (continuations joined)."""
    text = DOCKERFILE.replace("\\\n", " ")
    found = [line for line in text.splitlines() if line.strip().upper().startswith(name + " ")]
    assert found, f"Dockerfile has no {name}"
    args = found[-1].strip()[len(name):].strip()
    if name == "HEALTHCHECK":
        args = args[args.index("CMD") + 3:].strip()
    return json.loads(args)


def built_from_dockerfile(service: str) -> bool:
    return "build" in SERVICES[service]


# --------------------------------------------------------------------------------------
# variables


def test_every_payops_variable_is_a_settings_field():
    fields = set(settings_field_env_names())
    for name, text in (("docker-compose.yml", COMPOSE_TEXT), ("Dockerfile", DOCKERFILE)):
        used = set(re.findall(r"\bPAYOPS_[A-Z0-9_]+\b", text))
        unknown = sorted(used - fields)
        assert not unknown, f"{name} uses variables that are not Settings fields: {unknown}"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_services_reach_postgres_redis_temporal_by_service_name(service):
    env = env_of(service)
    for var in ("PAYOPS_DATABASE_URL", "PAYOPS_REDIS_URL", "PAYOPS_TEMPORAL_ADDRESS"):
        assert env.get(var), f"{service} lacks {var}"

    db = urlsplit(env["PAYOPS_DATABASE_URL"])
    assert db.scheme.startswith("postgres")
    assert db.hostname in SERVICES, f"{service}: database host {db.hostname!r} is not a compose service"
    pg = env_of(db.hostname)
    assert SERVICES[db.hostname]["image"].startswith("postgres:")
    assert (db.port or 5432) == 5432
    assert db.username == pg["POSTGRES_USER"]
    assert db.password == pg["POSTGRES_PASSWORD"], "database password differs from the postgres service's"
    assert db.path.lstrip("/") == pg.get("POSTGRES_DB", pg["POSTGRES_USER"])

    redis = urlsplit(env["PAYOPS_REDIS_URL"])
    assert redis.scheme == "redis"
    assert redis.hostname in SERVICES and SERVICES[redis.hostname]["image"].startswith("redis:")
    assert (redis.port or 6379) == 6379

    host, _, port = env["PAYOPS_TEMPORAL_ADDRESS"].rpartition(":")
    assert host in SERVICES and "temporalio/" in SERVICES[host]["image"], f"{service}: Temporal host {host!r}"
    assert port == "7233"
    assert env["PAYOPS_TEMPORAL_NAMESPACE"] == "default"  # the namespace temporal/temporal-init set up

    if service != "migrate":
        for target in (db.hostname, redis.hostname, host):
            assert depends_on(service).get(target) == "service_healthy", f"{service} should wait for {target}"
        assert depends_on(service).get("migrate") == "service_completed_successfully"
        assert depends_on(service).get("temporal-init") == "service_completed_successfully"
    else:
        assert depends_on(service).get(db.hostname) == "service_healthy"


def test_app_services_reach_the_sandbox_bank():
    bank_cmd = command_of("sandbox-bank")
    bank_port = bank_cmd[bank_cmd.index("--port") + 1]
    webhook = urlsplit(bank_cmd[bank_cmd.index("--webhook-url") + 1])
    assert webhook.hostname == "api" and webhook.port == 8000
    assert webhook.path == "/api/v1/webhooks/banks/sandbox"
    for service in ("api", "worker"):
        url = urlsplit(env_of(service)["PAYOPS_SANDBOX_BANK_URL"])
        assert url.hostname == "sandbox-bank" and url.hostname in SERVICES
        assert str(url.port) == bank_port


def test_the_bank_and_the_api_share_the_webhook_secret_by_default():
    bank_cmd = command_of("sandbox-bank")
    assert bank_cmd[bank_cmd.index("--webhook-secret") + 1] == DEV_BANK_WEBHOOK_SECRET
    assert "${PAYOPS_BANK_WEBHOOK_SECRET" in COMPOSE_TEXT  # the same variable overrides both


def test_compose_defaults_are_settings_payops_accepts(monkeypatch):
    for name in list(os.environ):
        if name.startswith("PAYOPS_"):
            monkeypatch.delenv(name)
    for name, value in env_of("api").items():
        if value is not None:
            monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.env == "dev", "compose defaults to PAYOPS_ENV=dev (dev secrets); prod needs real ones"
    assert settings.async_database_url.startswith("postgresql+asyncpg://")
    # ... and PAYOPS_ENV=prod without real secrets is refused, as the compose header says.
    monkeypatch.setenv("PAYOPS_ENV", "prod")
    with pytest.raises(ValueError, match="dev secrets"):
        Settings(_env_file=None)


def test_secrets_are_passed_through_not_hardcoded():
    env = env_of("api")
    for secret in ("PAYOPS_JWT_SECRET", "PAYOPS_CODEC_KEYS", "PAYOPS_BANK_WEBHOOK_SECRET"):
        assert secret in env and env[secret] is None, f"{secret}: take it from the environment, not the file"
    for service in ("postgres", "temporal-db"):
        for key, value in (SERVICES[service].get("environment") or {}).items():
            if "PASSWORD" in key:
                assert str(value).startswith("${"), f"{service}.{key} must be overridable"
                assert "change-me" in value, f"{service}.{key}: use an obvious placeholder default"


# --------------------------------------------------------------------------------------
# ports, healthchecks, scaling


def published(service: str) -> set[str]:
    return {str(p) for p in SERVICES[service].get("ports", [])}


def test_published_ports():
    assert "8000:8000" in published("api")
    assert "8233:8080" in published("temporal-ui")
    assert SERVICES["temporal-ui"]["image"].startswith("temporalio/ui")
    assert env_of("temporal-ui")["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env_of("api")["PAYOPS_TEMPORAL_UI_URL"].endswith(":8233")


def test_every_dependency_target_exists_and_healthy_ones_have_a_healthcheck():
    for service in SERVICES:
        for target, condition in depends_on(service).items():
            assert target in SERVICES, f"{service} depends on unknown service {target}"
            if condition == "service_healthy":
                hc = SERVICES[target].get("healthcheck")
                has_own = hc and hc.get("test") and not hc.get("disable")
                inherits = built_from_dockerfile(target) and not hc
                assert has_own or inherits, f"{service} waits for {target} to be healthy; {target} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert SERVICES[target].get("restart", "no") == "no", f"{target} is a one-shot job"


def test_required_healthchecks():
    def probe(service):
        return " ".join(map(str, SERVICES[service]["healthcheck"]["test"]))

    assert "pg_isready" in probe("postgres") and "pg_isready" in probe("temporal-db")
    assert "redis-cli" in probe("redis") and "ping" in probe("redis")
    assert "temporal" in probe("temporal")
    assert "/ready" in probe("api")
    assert SERVICES["postgres"]["image"] == "postgres:16" and SERVICES["redis"]["image"].startswith("redis:7")


def test_image_healthcheck_is_not_inherited_by_services_without_the_api_port():
    # The Dockerfile HEALTHCHECK probes :8000/health; any other service of that image overrides it.
    for service in SERVICES:
        if built_from_dockerfile(service) and service != "api":
            hc = SERVICES[service].get("healthcheck")
            assert hc, f"{service} would inherit the API healthcheck and be reported unhealthy"


def test_temporal_has_its_own_database():
    temporal_env = env_of("temporal")
    assert temporal_env["POSTGRES_SEEDS"] == "temporal-db"
    assert temporal_env["POSTGRES_PWD"] == env_of("temporal-db")["POSTGRES_PASSWORD"]
    assert depends_on("temporal") == {"temporal-db": "service_healthy"}
    assert SERVICES["temporal"]["image"].startswith("temporalio/auto-setup")


def test_worker_scales():
    worker = SERVICES["worker"]
    assert "container_name" not in worker, "a fixed container_name prevents --scale worker=N"
    assert not worker.get("ports"), "published ports prevent --scale worker=N"
    assert command_of("worker") == ["payops", "worker"]
    # compose runs several workers (README "Scaling out"); none is special
    assert worker["deploy"]["replicas"] >= 2
    assert "hostname" not in worker and not any(
        "worker" in str(dep) for svc in SERVICES.values() for dep in (svc.get("depends_on") or {})
    ), "no service may depend on one particular worker"


def test_migrate_is_a_one_shot_payops_migrate():
    assert command_of("migrate") == ["payops", "migrate"]
    assert SERVICES["migrate"].get("restart") == "no"
    assert depends_on("api")["migrate"] == "service_completed_successfully"


# --------------------------------------------------------------------------------------
# the commands run real code


def assert_runs_payops_code(argv: list[str], where: str) -> None:
    if argv[0] == "uvicorn":
        target = next(a for a in argv[1:] if not a.startswith("-"))
        module, _, attr = target.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        assert callable(obj), f"{where}: {target} is not callable"
        assert "--factory" in argv, f"{where}: {target} is an app factory"
    elif argv[0] == "payops":
        from cli.main import app

        names = {c.name or c.callback.__name__ for c in app.registered_commands}
        assert argv[1] in names, f"{where}: `payops {argv[1]}` is not a payops command ({sorted(names)})"
    elif argv[:2] == ["python", "-m"]:
        assert importlib.util.find_spec(argv[2]) is not None, f"{where}: no module {argv[2]}"
        importlib.import_module(argv[2])
    else:
        pytest.fail(f"{where}: unexpected command {argv}")


def test_dockerfile_cmd_and_compose_commands_reference_existing_code():
    assert_runs_payops_code(dockerfile_instruction("CMD"), "Dockerfile CMD")
    assert not re.search(r"^\s*ENTRYPOINT", DOCKERFILE, re.M) or dockerfile_instruction("ENTRYPOINT")
    for service in SERVICES:
        if built_from_dockerfile(service):
            assert_runs_payops_code(command_of(service), f"compose service {service}")


def test_dockerfile_shape():
    assert re.search(r"^FROM python:3\.11-slim\b", DOCKERFILE, re.M)
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.M)
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    assert "[dev]" not in DOCKERFILE, "the image installs the project without the dev extras"
    assert dockerfile_instruction("CMD") == [
        "uvicorn", "api.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000",
    ]
    probe = " ".join(dockerfile_instruction("HEALTHCHECK"))
    assert "/health" in probe and ":8000" in probe


def test_health_and_ready_routes_exist():
    from api.app import create_app

    paths = set(create_app(Settings(_env_file=None)).openapi()["paths"])
    assert {"/health", "/ready"} <= paths

    def served(path: str) -> bool:
        return any(re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", p), path) for p in paths)

    bank_cmd = command_of("sandbox-bank")
    webhook_path = urlsplit(bank_cmd[bank_cmd.index("--webhook-url") + 1]).path
    assert served(webhook_path), f"the sandbox bank posts to {webhook_path}, which the API does not serve"


def test_dockerignore_keeps_local_state_and_secrets_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".payops", ".env", ".git"} <= ignored
    for needed in ("pyproject.toml", "alembic.ini", "migrations", "core", "api", "workers", "sandbox"):
        assert needed not in ignored, f".dockerignore excludes {needed}, which the image needs"


# --------------------------------------------------------------------------------------
# Temporal search attributes


def test_registered_search_attributes_match_core_names():
    script = "\n".join(command_of("temporal-init"))
    registered = dict(re.findall(r"^\s*sa\s+(\w+)\s+(\w+)\s*$", script, re.M))
    assert registered == SEARCH_ATTRIBUTES, (
        "temporal-init in docker-compose.yml must register exactly core.platform.names.SEARCH_ATTRIBUTES"
    )
    assert "temporal operator search-attribute create" in script
    assert depends_on("temporal-init") == {"temporal": "service_healthy"}
    assert env_of("temporal-init")["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_the_temporal_ui_decodes_through_payops_codec_server():
    """The production UI calls the API's /codec from the browser (the published API port),
    forwarding its users' access tokens; the API lets the UI's origin in (CORS)."""
    from api.codec_server import CODEC_PATH, cors_origins

    ui = env_of("temporal-ui")
    endpoint = urlsplit(ui["TEMPORAL_CODEC_ENDPOINT"])
    assert endpoint.path == CODEC_PATH and endpoint.hostname == "localhost"
    assert f"{endpoint.port}:8000" in published("api")
    assert ui["TEMPORAL_CODEC_PASS_ACCESS_TOKEN"] == "true"
    ui_origin = env_of("api")["PAYOPS_TEMPORAL_UI_URL"]
    assert ui_origin in cors_origins(Settings(_env_file=None, temporal_ui_url=ui_origin))


# --------------------------------------------------------------------------------------
# Prometheus + Grafana (issue 22): what compose mounts exists, scrapes reach what payops serves


def mounts(service: str) -> dict[str, Path]:
    """container path -> repository path of the service's bind mounts (./...:/target[:ro])."""
    found = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


def test_prometheus_scrapes_the_api_and_every_worker_replica():
    prom_mounts = mounts("prometheus")
    config_path = SERVICES["prometheus"]["command"][0].split("=", 1)[1]
    assert config_path in prom_mounts and prom_mounts[config_path].is_file()
    config = yaml.safe_load(prom_mounts[config_path].read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    api_targets = [t for sc in jobs["payops-api"]["static_configs"] for t in sc["targets"]]
    assert api_targets == ["api:8000"] and "8000:8000" in published("api")
    assert jobs["payops-api"].get("metrics_path", "/metrics") == "/metrics"
    from api.app import create_app

    import asyncio

    import httpx

    async def scrape() -> httpx.Response:  # the app without its lifespan: no database, the scrape still answers
        transport = httpx.ASGITransport(app=create_app(Settings(_env_file=None)))
        async with httpx.AsyncClient(transport=transport, base_url="http://api:8000") as http:
            return await http.get(jobs["payops-api"].get("metrics_path", "/metrics"))

    scraped = asyncio.run(scrape())
    assert scraped.status_code == 200 and "payouts_created_total" in scraped.text

    worker_sd = jobs["payops-worker"]["dns_sd_configs"][0]
    assert worker_sd["names"] == ["worker"] and worker_sd["type"] == "A"
    worker_env = env_of("worker")
    assert str(worker_sd["port"]) == worker_env["PAYOPS_WORKER_METRICS_PORT"]
    assert worker_env["PAYOPS_WORKER_METRICS_HOST"] == "0.0.0.0", "a worker must listen beyond its loopback"
    settings = Settings(_env_file=None, worker_metrics_port=worker_env["PAYOPS_WORKER_METRICS_PORT"],
                        worker_metrics_host=worker_env["PAYOPS_WORKER_METRICS_HOST"])
    assert settings.worker_metrics_port == int(worker_sd["port"])
    assert not SERVICES["worker"].get("ports"), "the worker stays scalable: its metrics port is not published"


def test_grafana_provisions_the_prometheus_datasource_and_every_dashboard():
    graf_mounts = mounts("grafana")
    provisioning = graf_mounts["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert urlsplit(datasource["url"]).hostname == "prometheus" and urlsplit(datasource["url"]).port == 9090
    assert "9090:9090" in published("prometheus")
    provider = yaml.safe_load((provisioning / "dashboards" / "payops.yml").read_text())["providers"][0]
    dashboards_dir = graf_mounts[provider["options"]["path"]]
    files = sorted(dashboards_dir.glob("*.json"))
    assert {f.stem for f in files} >= {"payouts", "connectors", "sla", "workers", "reconciliation", "syncs"}
    uids = set()
    for f in files:
        dashboard = json.loads(f.read_text())
        assert dashboard["uid"] not in uids, f"{f.name}: duplicate dashboard uid"
        uids.add(dashboard["uid"])
        for panel in dashboard["panels"]:
            for ds in [panel.get("datasource"), *(t.get("datasource") for t in panel.get("targets", []))]:
                assert ds is None or ds["uid"] == datasource["uid"], f"{f.name}: {panel['title']} names {ds}"
    home = env_of("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards_dir / Path(home).name).is_file() and home.startswith(provider["options"]["path"])
    assert depends_on("grafana") == {"prometheus": "service_healthy"}
    assert "3000:3000" in published("grafana")
    assert env_of("grafana")["GF_SECURITY_ADMIN_PASSWORD"] == "grafana-change-me"  # placeholder, overridable
    assert "${GRAFANA_ADMIN_PASSWORD" in COMPOSE_TEXT
