"""mirrorlab as a third party gets it: a wheel built from this checkout and installed on its own
(not the checkout's editable install) has the package, its shipped topologies, the web UI and
the pytest plugin; and the example project in examples/pytest-project, which imports only the
installed package, passes against it: its flowsim tests, and a real lab from the plugin's
`mirrorlab_lab` fixture running beside the session's lab."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, STATE_DIR

# What building mirrorlab reads (pyproject.toml maps the folders to the package's names).
PACKAGING_INPUTS = ("pyproject.toml", "README.md", "lab", "controller", "topologies")
EXAMPLE = REPO / "examples" / "pytest-project"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A directory holding mirrorlab installed from a wheel of this checkout (no dependencies:
    those of the environment running the tests serve)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in PACKAGING_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"),
                    str(source)], check=True, capture_output=True, timeout=300)
    [wheel] = (work / "dist").glob("mirrorlab-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(work / "site"), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return work / "site"


def installed_env(site: Path) -> dict:
    """The environment of a program that finds mirrorlab only where it was installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIRRORLAB_")}
    env["PYTHONPATH"] = str(site)
    return env


def test_the_wheel_holds_the_package_topologies_web_ui_and_plugin(installed):
    files = {str(p.relative_to(installed)) for p in installed.rglob("*") if p.is_file()}
    shipped = ({f"mirrorlab/controller/{p.relative_to(REPO / 'controller')}"
                for p in (REPO / "controller" / "web").rglob("*") if p.is_file()}
               | {f"mirrorlab/topologies/{p.name}" for p in (REPO / "topologies").glob("*.yaml")}
               | {f"mirrorlab/{p.relative_to(REPO / 'lab')}" for p in (REPO / "lab").rglob("*.py")})
    assert shipped - files == set()
    [entry_points] = installed.glob("mirrorlab-*.dist-info/entry_points.txt")
    assert "[pytest11]\nmirrorlab = mirrorlab.testing.pytest_plugin" in entry_points.read_text()
    where = subprocess.run([sys.executable, "-c", "import mirrorlab.topofile as t, mirrorlab.controller.rest as r;"
                            "print(t.__file__); print(t.locate('default')); print(r.__file__)"],
                           env=installed_env(installed), capture_output=True, text=True, check=True,
                           cwd="/")
    assert all(line.startswith(str(installed)) for line in where.stdout.splitlines()), where.stdout
    check = subprocess.run([sys.executable, "-m", "mirrorlab.cli", "check", "default"], cwd="/",
                           env=installed_env(installed), capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.startswith("default: ok: "), check.stderr


def test_the_example_project_passes_against_the_installed_package(installed, lab):
    """Its own lab (state directory and port of its own) runs while the session's lab is up."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
         "--mirrorlab-state-dir", f"{STATE_DIR}-ex"],
        cwd=EXAMPLE, env=installed_env(installed), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert result.stdout.count(" PASSED") == 4, result.stdout
    assert lab.status()["problems"] == []
