"""docker-compose.yml and the Dockerfiles, checked statically (no Docker engine here)."""

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
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
CPU_DOCKERFILE = PROJECT_ROOT / "Dockerfile"
GPU_DOCKERFILE = PROJECT_ROOT / "Dockerfile.gpu"
GPU_REQUIREMENTS = PROJECT_ROOT / "requirements" / "gpu.txt"
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]


def _load_gpu_module():
    spec = importlib.util.spec_from_file_location("gpu_requirements", PROJECT_ROOT / "requirements" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu = _load_gpu_module()


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or (not pending and not line.strip()):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return instructions


def check_dockerfile(dockerfile: Path, context: Path) -> None:
    """Pinned base images, COPY sources that exist in the build context."""
    assert dockerfile.is_file(), f"{dockerfile} is missing"
    for keyword, arguments in dockerfile_instructions(dockerfile):
        if keyword == "FROM":
            assert re.match(r"[\w./-]+:[\w.-]+", arguments), f"{dockerfile}: unpinned base {arguments}"
        if keyword == "COPY":
            source = arguments.split()[0]
            assert (context / source).exists(), f"{dockerfile}: COPY source {source} missing"
            ignored = (context / ".dockerignore").read_text().split() if (context / ".dockerignore").exists() else []
            assert source.rstrip("/") not in ignored, f"{dockerfile}: COPY {source}, which .dockerignore leaves out"


def pip_installs(dockerfile: Path) -> list[list[str]]:
    """The arguments after `pip install` of every install command in the Dockerfile's RUNs, in order."""
    installs = []
    for keyword, arguments in dockerfile_instructions(dockerfile):
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", arguments):
            words = shlex.split(command)
            for i in range(len(words) - 1):
                if words[i] == "pip" and words[i + 1] == "install":
                    installs.append(words[i + 2:])
    return installs


def installs_the_project(arguments: list[str]) -> bool:
    """`.`, `.[extra]` or `.${EXTRAS:+[$EXTRAS]}`: the project from the build context."""
    return any(word == "." or word.startswith((".[", ".$")) for word in arguments)


def pins(requirements: list[str]) -> dict[str, tuple[str, str]]:
    """name -> (extras, version) of exact pins; anything else is an error."""
    parsed = {}
    for requirement in requirements:
        name, extras, version = gpu.parse_pin(requirement)
        assert name not in parsed, f"{name} is pinned twice"
        parsed[name] = (extras, version)
    return parsed


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
    for service in SERVICES.values():
        if "build" in service:
            build = service["build"]
            context = PROJECT_ROOT / build["context"]
            check_dockerfile(context / build.get("dockerfile", "Dockerfile"), context)
    check_dockerfile(GPU_DOCKERFILE, PROJECT_ROOT)  # built by hand for Kubernetes (docs/scaling.md)


def test_the_cpu_install_stays_tensorflow_cpu():
    """pyproject.toml, the Dockerfile and docker-compose: tensorflow-cpu, installed with its dependencies."""
    dependencies = pins(PYPROJECT["dependencies"])
    assert dependencies[gpu.CPU_TENSORFLOW] == ("", "2.21.0")
    assert "tensorflow" not in dependencies
    for extra, requirements in PYPROJECT["optional-dependencies"].items():
        names = {gpu.normalise(re.split(r"[\[=<>!~;\s]", r, maxsplit=1)[0]) for r in requirements}
        assert not names & {"tensorflow", "tensorflow-cpu"}, f"extra {extra} would install a second TensorFlow"
    project = [a for a in pip_installs(CPU_DOCKERFILE) if installs_the_project(a)]
    assert len(project) == 1 and "--no-deps" not in project[0], project  # with its dependencies: tensorflow-cpu
    instructions = " ".join(arguments for _, arguments in dockerfile_instructions(CPU_DOCKERFILE))
    assert "and-cuda" not in instructions and "requirements" not in instructions
    for name, service in SERVICES.items():
        if "build" in service and service["build"]["context"] == ".":
            assert service["build"].get("dockerfile", "Dockerfile") == "Dockerfile", f"{name} builds another image"


def test_the_gpu_requirements_pin_exactly_the_versions_of_pyproject():
    cpu = pins(PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["kubernetes"])
    gpu_set = pins(gpu.read_requirements(GPU_REQUIREMENTS))
    assert gpu.CPU_TENSORFLOW not in gpu_set, "the GPU set must not install tensorflow-cpu"
    assert gpu_set["tensorflow"] == ("[and-cuda]", cpu[gpu.CPU_TENSORFLOW][1])
    shared = set(cpu) - {gpu.CPU_TENSORFLOW}
    assert set(gpu_set) - {"tensorflow"} == shared, "the GPU set adds or drops a package"
    for name in sorted(shared):
        assert gpu_set[name] == cpu[name], f"{name}: GPU set {gpu_set[name]} vs pyproject.toml {cpu[name]}"
    # ...and the file is what the generator writes today (python requirements/gpu.py rewrites it).
    assert GPU_REQUIREMENTS.read_text() == gpu.render(), "requirements/gpu.txt is stale: python requirements/gpu.py"


def test_the_gpu_set_is_generated_by_swapping_only_tensorflow(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["numpy==2.4.6", "tensorflow-cpu==9.9.9", "psycopg[binary]==3.3.9"]\n'
        '[project.optional-dependencies]\nkubernetes = ["dagster-k8s==0.29.27"]\n'
    )
    assert gpu.gpu_requirements(pyproject) == [
        "numpy==2.4.6", "tensorflow[and-cuda]==9.9.9", "psycopg[binary]==3.3.9", "dagster-k8s==0.29.27"]
    pyproject.write_text('[project]\ndependencies = ["numpy>=2"]\n[project.optional-dependencies]\nkubernetes = []\n')
    with pytest.raises(ValueError, match="not an exact pin"):
        gpu.gpu_requirements(pyproject)


def test_the_gpu_environment_check_rejects_tensorflow_cpu(monkeypatch):
    """What Dockerfile.gpu runs after installing: it fails on this (CPU) environment, passes on the GPU set."""
    from importlib import metadata

    requirements = gpu.read_requirements(GPU_REQUIREMENTS)
    problems = gpu.installed_problems(requirements)
    assert any("tensorflow-cpu" in p for p in problems) and any(p.startswith("tensorflow==") for p in problems)

    versions = {gpu.parse_pin(r)[0]: gpu.parse_pin(r)[2] for r in requirements}

    def gpu_image_version(name: str) -> str:
        if gpu.normalise(name) not in versions:
            raise metadata.PackageNotFoundError(name)
        return versions[gpu.normalise(name)]

    monkeypatch.setattr(gpu.metadata, "version", gpu_image_version)
    assert gpu.installed_problems(requirements) == []
    versions["numpy"] = "2.0.0"
    assert gpu.installed_problems(requirements) == ["numpy is 2.0.0, the GPU set pins 2.4.6"]


def test_the_gpu_image_installs_the_gpu_set_and_not_tensorflow_cpu():
    installs = pip_installs(GPU_DOCKERFILE)
    assert not any("tensorflow" in word for a in installs for word in a), "TensorFlow comes from requirements/gpu.txt"
    gpu_set = [i for i, a in enumerate(installs) if "-r requirements/gpu.txt" in " ".join(a)]
    project = [i for i, a in enumerate(installs) if installs_the_project(a)]
    assert len(gpu_set) == 1 and len(project) == 1 and gpu_set[0] < project[0], installs
    assert "--no-deps" in installs[project[0]], "the project's dependencies would bring tensorflow-cpu back"
    runs = [a for k, a in dockerfile_instructions(GPU_DOCKERFILE) if k == "RUN"]
    checks = [r for r in runs if "requirements/gpu.py" in r]
    assert len(checks) == 2 and "gpu.py --check &&" in checks[0] and "-r requirements/gpu.txt" in checks[0]
    assert "--no-deps ." in checks[1] and checks[1].endswith("python requirements/gpu.py --check-installed")
    cpu, gpu_image = dockerfile_instructions(CPU_DOCKERFILE), dockerfile_instructions(GPU_DOCKERFILE)
    # The same image otherwise: base, layout, environment, entry point.
    same = ("FROM", "WORKDIR", "EXPOSE", "CMD")
    assert [i for i in cpu if i[0] in same] == [i for i in gpu_image if i[0] in same]
    assert [a for k, a in cpu if k == "COPY" and "requirements" not in a] == \
        [a for k, a in gpu_image if k == "COPY" and "requirements" not in a]
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for k, a in gpu_image if k == "ENV")))
    for name, value in re.findall(r"(\w+)=(\S+)", " ".join(a for k, a in cpu if k == "ENV")):
        assert env.get(name) == value, f"Dockerfile.gpu sets {name}={env.get(name)}, Dockerfile {value}"


def _uv() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


@pytest.mark.slow
def test_the_gpu_requirements_resolve_on_linux():
    """A resolver dry run of the GPU set for the image's platform (needs PyPI; installs nothing)."""
    uv = _uv()
    if uv is None:
        pytest.skip("uv is not installed")
    result = subprocess.run(
        [uv, "pip", "compile", str(GPU_REQUIREMENTS), "--python-version", "3.11",
         "--python-platform", "x86_64-manylinux_2_36", "--no-header", "--no-annotate", "--quiet"],
        capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0 and "No solution found" not in result.stderr:
        pytest.skip(f"resolver could not reach the index: {result.stderr.strip()[-300:]}")
    assert result.returncode == 0, result.stderr
    resolved = pins(gpu.parse_requirements(result.stdout))
    for name, (_, version) in pins(gpu.read_requirements(GPU_REQUIREMENTS)).items():
        assert resolved[name][1] == version, f"{name} resolves to {resolved[name][1]}, pinned {version}"
    assert gpu.CPU_TENSORFLOW not in resolved
    assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-nvcc-cu12", "nvidia-nccl-cu12"} <= set(resolved)


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
