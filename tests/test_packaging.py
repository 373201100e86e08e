"""The plugin is installable and napari finds its manifest; imports stay light."""

from __future__ import annotations

import os
import sys
import venv
from pathlib import Path

import pytest

from helpers import run_command

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_validates_from_this_install():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-inceptseg")
    assert pm.name == "napari-inceptseg"
    ids = {c.id for c in pm.contributions.commands}
    assert all(i.startswith("napari-inceptseg.") for i in ids)
    # every command's python_name resolves
    for cmd in pm.contributions.commands:
        if cmd.python_name:
            mod, _, attr = cmd.python_name.partition(":")
            assert callable(getattr(__import__(mod, fromlist=[attr]), attr))


def test_root_manifest_is_the_packaged_one():
    import napari_inceptseg

    packaged = Path(napari_inceptseg.__file__).with_name("napari.yaml")
    assert packaged.read_text() == (ROOT / "napari.yaml").read_text()


def test_import_does_not_load_torch_or_qt():
    code = (
        "import sys, napari_inceptseg, napari_inceptseg.sample_data, napari_inceptseg.params;"
        "from napari_inceptseg import segment, score;"
        "bad=[m for m in ('torch','qtpy','PyQt5','napari') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = run_command([sys.executable, "-c", code], check=True).stdout
    assert out.strip() == ""


@pytest.mark.slow
def test_wheel_installs_and_validates_in_fresh_venv(tmp_path):
    """Build the wheel with `python -m build` and validate the manifest with npe2
    in a new virtual environment that has only the wheel and npe2."""
    dist = tmp_path / "dist"
    run_command(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)], check=True
    )
    (wheel,) = dist.glob("napari_inceptseg-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run_command([py, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, env=env)
    run_command([py, "-m", "pip", "install", "-q", "npe2"], check=True, env=env)
    proc = run_command([env_dir / "bin" / "npe2", "validate", "napari-inceptseg"], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout


def test_the_suite_runs_under_the_qt_binding_make_installs():
    """napari recommends a Qt6 binding: make installs PyQt6 and the suite runs under it
    (``QT_API=pyqt5`` runs it under PyQt5, kept working through the ``pyqt5`` extra)."""
    import qtpy

    wanted = os.environ.get("QT_API", "pyqt6").lower()
    assert qtpy.API_NAME.lower() == wanted
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        assert qtpy.QT6, "CI tests the Qt6 binding that make installs"
