"""The package as a user installs it: ``python -m build`` makes a wheel and an sdist, and the
wheel, installed into a fresh virtual environment, has its presets and runs the command line."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import closedloop

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("build", reason="the build frontend is not installed "
                                    "(bash scripts/setup.sh --test installs it)")


def _run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd,
                          timeout=600)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def test_the_wheel_installs_into_a_fresh_environment_and_trains(tmp_path: Path) -> None:
    """The wheel and sdist carry the presets and the one version; installed alone (without
    the repository on the path, dependencies taken from this environment), the command line
    lists the presets and trains one."""
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir",
         dist, ROOT, cwd=tmp_path)
    version = closedloop.__version__
    (wheel,) = dist.glob(f"closedloop-{version}-*.whl")
    (sdist,) = dist.glob(f"closedloop-{version}.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(f"closedloop-{version}.dist-info/METADATA").decode()
    assert "closedloop/config/presets/di-tanh-closed.yaml" in names
    assert f"\nVersion: {version}\n" in metadata
    with tarfile.open(sdist) as archive:
        assert any(n.endswith("src/closedloop/config/presets/tracking-closed.yaml")
                   for n in archive.getnames())

    fresh = tmp_path / "fresh"
    _run(sys.executable, "-m", "venv", fresh, cwd=tmp_path)
    python = fresh / "bin" / "python"
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp_path)
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                     cwd=tmp_path).stdout.strip())
    # the dependencies from this environment; its own .pth files (the editable install of
    # the repository) are not read from a path added this way
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = _run(python, "-c", "import closedloop; print(closedloop.__file__, "
                 "closedloop.__version__, closedloop.Trainer.__name__)", cwd=tmp_path).stdout
    assert where.startswith(str(site)) and f" {version} Trainer" in where
    closedloop_command = fresh / "bin" / "closedloop"
    presets = _run(closedloop_command, "presets", cwd=tmp_path).stdout
    assert "di-tanh-closed" in presets and "tracking-closed" in presets
    trained = _run(closedloop_command, "train", "di-tanh-closed", "--epochs", "5", "--quiet",
                   "--out", tmp_path / "run.h5", cwd=tmp_path).stdout
    assert "complete, epoch 5" in trained
