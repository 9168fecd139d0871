"""The layers hold: what serves never loads TensorFlow, and the pure modules never load Dagster.

Each case runs in a fresh interpreter, so nothing another test imported can hide a regression.
"""

import json
import subprocess
import sys

import pytest

TRAINING_ONLY = ("tensorflow", "keras", "tf2onnx")

PURE_MODULES = (
    "twotower_pipeline.model.config",
    "twotower_pipeline.model.dataset",
    "twotower_pipeline.model.features",
    "twotower_pipeline.model.evaluation",
    "twotower_pipeline.model.baselines",
    "twotower_pipeline.model.preparation",
    "twotower_pipeline.model.serving_path",
    "twotower_pipeline.model.onnx_runtime",
    "twotower_pipeline.model.training",
    "twotower_pipeline.vector_store",
    "twotower_pipeline.publishing",
    "twotower_pipeline.promotion",
    "twotower_pipeline.demo_data",
)


def _loaded_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    """Top-level packages in sys.modules after running ``code`` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_loading_the_code_location_does_not_load_tensorflow():
    loaded = _loaded_after("import twotower_pipeline.definitions")
    assert "dagster" in loaded
    assert not loaded & set(TRAINING_ONLY), sorted(loaded & set(TRAINING_ONLY))


@pytest.mark.parametrize("args", [["rollback", "--help"], ["status", "--help"], ["versions", "--help"]])
def test_read_only_commands_do_not_load_tensorflow(args):
    loaded = _loaded_after(
        "from twotower_pipeline.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass"
    )
    assert not loaded & set(TRAINING_ONLY), sorted(loaded & set(TRAINING_ONLY))


def test_status_and_an_unknown_rollback_target_do_not_load_tensorflow(database_url, tmp_path):
    import os

    env = {**os.environ, "TWOTOWER_DATABASE_URL": database_url, "TWOTOWER_HOME": str(tmp_path)}
    for args in (["status"], ["rollback", "--to", "tt-20200101-000000"], ["versions"]):
        loaded = _loaded_after(
            "from twotower_pipeline.cli import main\n"
            "try:\n"
            f"    main({args!r})\n"
            "except SystemExit:\n"
            "    pass", env)
        assert not loaded & set(TRAINING_ONLY), (args, sorted(loaded & set(TRAINING_ONLY)))


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_do_not_load_dagster(module):
    loaded = _loaded_after(f"import {module}")
    assert "dagster" not in loaded, module


@pytest.mark.parametrize("module", [m for m in PURE_MODULES if not m.endswith((".training",))])
def test_serving_side_modules_do_not_load_tensorflow(module):
    loaded = _loaded_after(f"import {module}")
    assert not loaded & set(TRAINING_ONLY), (module, sorted(loaded & set(TRAINING_ONLY)))
