"""The GPU training set (requirements/gpu.txt), generated from pyproject.toml's pins.

pyproject.toml pins ``tensorflow-cpu``; GPU training needs ``tensorflow[and-cuda]`` (TensorFlow's
Linux wheel plus NVIDIA's CUDA/cuDNN pip wheels). Both provide the ``tensorflow`` module, so one
environment must hold only one of them: the GPU environment installs this file, then the project
with ``--no-deps``. This file is the project's dependencies and its ``kubernetes`` extra (the GPU
image runs the training step as a dagster-k8s step pod) at exactly the same pins, with
``tensorflow-cpu==X`` swapped for ``tensorflow[and-cuda]==X``.

    python requirements/gpu.py                    # rewrite requirements/gpu.txt from pyproject.toml
    python requirements/gpu.py --check            # exit 1 if requirements/gpu.txt is out of date
    python requirements/gpu.py --check-installed  # exit 1 unless this environment is the GPU set

Standard library only: it runs in the image before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
GPU_REQUIREMENTS = ROOT / "requirements" / "gpu.txt"
CPU_TENSORFLOW = "tensorflow-cpu"
GPU_TENSORFLOW = "tensorflow[and-cuda]"
EXTRAS = ("kubernetes",)  # the optional-dependency groups the GPU image also installs

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<extras>\[[^\]]*\])?==(?P<version>[^\s;]+)$")

HEADER = """\
# GPU training set: installed by Dockerfile.gpu (then the project with --no-deps).
# GENERATED from pyproject.toml by `python requirements/gpu.py`; do not edit by hand.
# The project's dependencies and its `kubernetes` extra at the same pins, with tensorflow-cpu
# swapped for tensorflow[and-cuda] at the same version (both provide the `tensorflow` module).
"""


def normalise(name: str) -> str:
    """PEP 503 name: ``Great_Expectations`` and ``great-expectations`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pin(requirement: str) -> tuple[str, str, str]:
    """(normalised name, extras such as ``[binary]`` or '', version) of an exact ``==`` pin."""
    match = _PIN.match(requirement.strip())
    if not match:
        raise ValueError(f"not an exact pin (name[extras]==version): {requirement!r}")
    return normalise(match["name"]), match["extras"] or "", match["version"]


def project_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The CPU install's requirements: pyproject's dependencies, then the extras the GPU image uses."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in EXTRAS:
        requirements += [r for r in project["optional-dependencies"][extra] if r not in requirements]
    return requirements


def gpu_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    requirements = project_requirements(pyproject)
    swapped = []
    for requirement in requirements:
        name, _, version = parse_pin(requirement)
        swapped.append(f"{GPU_TENSORFLOW}=={version}" if name == CPU_TENSORFLOW else requirement)
    if swapped == requirements:
        raise ValueError(f"pyproject.toml does not pin {CPU_TENSORFLOW}: nothing to swap for the GPU set")
    return swapped


def render(pyproject: Path = PYPROJECT) -> str:
    return HEADER + "".join(f"{requirement}\n" for requirement in gpu_requirements(pyproject))


def read_requirements(path: Path = GPU_REQUIREMENTS) -> list[str]:
    return parse_requirements(path.read_text())


def parse_requirements(text: str) -> list[str]:
    """The requirement lines of a requirements file (comments and blank lines dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def installed_problems(requirements: list[str]) -> list[str]:
    """What in this environment differs from the GPU set (empty: it is the GPU set)."""
    problems = []
    for requirement in requirements:
        name, _, version = parse_pin(requirement)
        name = "tensorflow" if name == normalise(GPU_TENSORFLOW.split("[")[0]) else name
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}=={version} is not installed")
            continue
        if found != version:
            problems.append(f"{name} is {found}, the GPU set pins {version}")
    try:
        problems.append(f"{CPU_TENSORFLOW} {metadata.version(CPU_TENSORFLOW)} is installed beside tensorflow")
    except metadata.PackageNotFoundError:
        pass
    return problems


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        if GPU_REQUIREMENTS.read_text() != render():
            print(f"{GPU_REQUIREMENTS} is out of date with pyproject.toml: run python requirements/gpu.py",
                  file=sys.stderr)
            return 1
        return 0
    if argv == ["--check-installed"]:
        problems = installed_problems(read_requirements())
        for problem in problems:
            print(f"GPU environment: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    GPU_REQUIREMENTS.write_text(render())
    print(f"wrote {GPU_REQUIREMENTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
