"""docker-compose.yml and the Dockerfiles, checked statically (no Docker engine here)."""

import re

import yaml

from twotower_pipeline.settings import (
    DAGSTER_HOME_ENV,
    DATABASE_URL_ENV,
    HOME_ENV,
    MLFLOW_TRACKING_URI_ENV,
    PROJECT_ROOT,
)

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PIPELINE_SERVICES = ("migrate", "user-code", "dagster-webserver", "dagster-daemon")


def test_every_part_of_the_product_has_a_service():
    assert set(SERVICES) >= {"app-db", "mlflow", "mlflow-db", "dagster-db", *PIPELINE_SERVICES}


def test_images_are_pinned_and_the_app_database_has_pgvector_08():
    for name, service in SERVICES.items():
        if "image" in service:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name} uses an unpinned image {image}"
    image = SERVICES["app-db"]["image"]
    match = re.match(r"pgvector/pgvector:(\d+)\.(\d+)\.\d+-pg\d+$", image)
    assert match and (int(match[1]), int(match[2])) >= (0, 8), image


def test_builds_point_at_dockerfiles_that_exist():
    for name, service in SERVICES.items():
        if "build" in service:
            build = service["build"]
            context = PROJECT_ROOT / build["context"]
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
            for line in dockerfile.read_text().splitlines():
                if line.startswith("FROM "):
                    assert re.match(r"FROM [\w./-]+:[\w.-]+", line), f"{dockerfile}: unpinned base {line}"
                if line.startswith("COPY "):
                    source = line.split()[1]
                    assert (context / source).exists(), f"{dockerfile}: COPY source {source} missing"


def test_pipeline_services_read_the_same_variables_as_the_code():
    for name in PIPELINE_SERVICES:
        env = SERVICES[name]["environment"]
        for variable in (HOME_ENV, DATABASE_URL_ENV, MLFLOW_TRACKING_URI_ENV, DAGSTER_HOME_ENV):
            assert variable in env, f"{name} does not set {variable}"
        assert "@app-db:5432/" in env[DATABASE_URL_ENV]
        assert env[MLFLOW_TRACKING_URI_ENV] == "http://mlflow:5000"


def test_dagster_uses_postgres_storage_configured_from_the_same_environment():
    instance = yaml.safe_load((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
    db = instance["storage"]["postgres"]["postgres_db"]
    env = SERVICES["dagster-daemon"]["environment"]
    for key in ("hostname", "db_name", "username", "password"):
        assert db[key]["env"] in env, f"dagster.yaml reads {db[key]['env']}, which compose does not set"
    assert env["DAGSTER_POSTGRES_HOST"] == "dagster-db"
    workspace = yaml.safe_load((PROJECT_ROOT / "deploy" / "workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    assert server["host"] == "user-code" and str(server["port"]) in " ".join(SERVICES["user-code"]["command"])


def test_mlflow_server_has_a_postgres_backend_and_an_artifact_volume():
    mlflow = SERVICES["mlflow"]
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://mlflow:")
    assert any(v.endswith(":/mlflow/artifacts") for v in mlflow["volumes"])
    script = (PROJECT_ROOT / "mlflow" / "server.sh").read_text()
    assert "--backend-store-uri" in script and "--workers" in script and "nproc" in script


def test_databases_and_servers_have_health_checks_and_services_wait_for_them():
    for name in ("app-db", "mlflow-db", "dagster-db", "mlflow", "user-code", "dagster-webserver"):
        assert "healthcheck" in SERVICES[name], f"{name} has no health check"
    for name, service in SERVICES.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{name} waits on {dependency}, which has no check"
    assert SERVICES["migrate"]["command"] == ["twotower", "db", "migrate"]
    assert SERVICES["user-code"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_ports_are_published_on_loopback_only_and_volumes_are_declared():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in COMPOSE["volumes"], f"{name} mounts undeclared volume {source}"


def test_no_secret_has_a_default_in_the_compose_file():
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    for variable in ("POSTGRES_PASSWORD", "MLFLOW_POSTGRES_PASSWORD", "DAGSTER_POSTGRES_PASSWORD"):
        assert re.search(r"\$\{" + variable + r":\?", text), f"{variable} must be required, not defaulted"
        assert variable in (PROJECT_ROOT / ".env.example").read_text()
    assert not (PROJECT_ROOT / ".env").exists() or ".env" in (PROJECT_ROOT / ".gitignore").read_text()
