"""A built wheel installs only under the chatedit namespace and its CLI runs from a fresh venv."""

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_answers_help(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    wheel = next(tmp_path.glob("chatedit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops <= {"chatedit", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, tops
    for expected in ("chatedit/tools/builtin/renderer.py", "chatedit/prompts/attributes.yaml",
                     "chatedit/tools/builtin/weights/generator.safetensors", "chatedit/ui/app.py"):
        assert expected in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # --no-deps: `chatedit --help` must work before torch is even importable
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True)
    out = subprocess.run([str(env_dir / "bin" / "chatedit"), "--help"], capture_output=True, text=True, check=True)
    assert "serve" in out.stdout and "train" in out.stdout
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    assert not (site / "tools").exists() and not (site / "ui").exists() and not (site / "prompts").exists()
