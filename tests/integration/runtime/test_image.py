"""The container image (Dockerfile) as far as this machine can test it without a container engine: every
file it copies exists and is not dropped by .dockerignore, its pins agree with the Makefile, the lock, the
chart and the Pulumi program (one image name and tag, uid 10001), and the virtualenv its build stage makes,
made here by the same `uv sync` commands from a copy of the same build context, runs the services: the
entry point's usage and refusals, the chart's migrate command, and an API process serving its web pages.
What cannot run here: `docker build` itself (the base image's Debian and Python, the layer cache, USER)."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from services.entry import MODULES
from services.runtime.embedded import free_port
from tests.conftest import Infra
from tests.service_procs import service_env, stop

ROOT = Path(__file__).resolve().parents[3]
UID = 10001
# The Pulumi program is a folder of its own (infra/), imported as the unit tests of infra import it.
if str(ROOT / "infra") not in sys.path:
    sys.path.insert(0, str(ROOT / "infra"))
from switchboard_infra.config import DEFAULTS  # noqa: E402
from switchboard_infra.workloads import MIGRATE_SCRIPT  # noqa: E402


def instructions() -> list[tuple[str, str, str]]:
    """(stage, INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    out: list[tuple[str, str, str]] = []
    stage = ""
    for line in logical:
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stage = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
        out.append((stage, word.upper(), rest.strip()))
    return out


def dockerignored(path: str) -> bool:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    parts = Path(path).parts
    return any(
        fnmatch.fnmatch(path, p)
        or fnmatch.fnmatch(parts[0], p)
        or fnmatch.fnmatch(Path(path).name, p.lstrip("*/"))
        for p in patterns
    )


def copies() -> list[tuple[str, list[str], str]]:
    """(stage, sources, destination) of every COPY from the build context (not --from another stage)."""
    out = []
    for stage, word, rest in instructions():
        if word != "COPY" or "--from=" in rest:
            continue
        *sources, dest = shlex.split(rest)
        out.append((stage, sources, dest))
    return out


def build_env() -> dict[str, str]:
    """The build stage's ENV lines."""
    env: dict[str, str] = {}
    for stage, word, rest in instructions():
        if stage == "build" and word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_every_copied_file_exists_and_reaches_the_build_context() -> None:
    seen = copies()
    assert seen, "the Dockerfile copies nothing"
    for _stage, sources, _dest in seen:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert not dockerignored(source), f"COPY {source}: .dockerignore drops it from the context"


def test_pins_agree_with_the_makefile_lock_chart_and_program() -> None:
    text = (ROOT / "Dockerfile").read_text()
    make_uv = re.search(r"^UV_VERSION := (\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert make_uv and f"uv=={make_uv.group(1)}" in text
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((ROOT / "charts/switchboard/Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "charts/switchboard/values.yaml").read_text())
    image = f"{values['image']['repository']}:{values['image']['tag']}"
    assert values["image"] == {**DEFAULTS["image"], "pullPolicy": values["image"]["pullPolicy"]}
    assert chart["appVersion"] == values["image"]["tag"] == version
    assert f'org.opencontainers.image.version="{version}"' in text
    assert f"docker build -t {image} ." in text
    assert f"docker build -t {image} ." in (ROOT / "docs/operators.md").read_text()
    # The image runs as the uid the chart and the program's pod security contexts ask for.
    users = [rest for stage, word, rest in instructions() if stage == "runtime" and word == "USER"]
    assert users == [f"{UID}:{UID}"]
    assert f"--uid {UID}" in text
    # Every sync is locked, and the image's the runtime set only: no `--extra dev`, no `--all-extras`; the
    # mypyc build's stage adds the `native` extra (mypy, setuptools) to a virtualenv the image does not copy.
    syncs = [(stage, rest) for stage, word, rest in instructions() if word == "RUN" and "uv sync" in rest]
    assert [stage for stage, _ in syncs] == ["build", "build", "native"]
    assert all("--locked" in s and "--all-extras" not in s for _, s in syncs)
    assert all("--extra" not in s for stage, s in syncs if stage == "build")
    assert "--extra native" in syncs[-1][1] and "--extra dev" not in syncs[-1][1]
    # The runtime stage takes the compiled modules only (and says where they are), not that virtualenv.
    froms = [rest for stage, word, rest in instructions() if stage == "runtime" and word == "COPY"]
    assert froms == ["--from=build /app/.venv /app/.venv", "--from=native /app/native /app/native"]
    assert "SB_MEDIA_NATIVE_DIR=/app/native" in text
    # The base image's Python is one the lock covers.
    base = re.search(r"ARG PYTHON_IMAGE=python:(3\.\d+)", text)
    assert base and base.group(1) in ("3.11", "3.12", "3.13")
    entry = [rest for stage, word, rest in instructions() if stage == "runtime" and word == "ENTRYPOINT"]
    assert entry == ['["switchboard-service"]']


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The build stage's virtualenv, built by its own `uv sync` lines from a copy of the build context."""
    work = tmp_path_factory.mktemp("image")
    src = work / "src"
    src.mkdir()
    venv = work / "venv"
    env = {**os.environ, **build_env(), "UV_PROJECT_ENVIRONMENT": str(venv)}
    # Bytecode for every module takes half a minute here; the image compiles it, the test does not need it.
    env.pop("UV_COMPILE_BYTECODE", None)
    # Copies suit an image layer; here hard links from uv's cache install the same files faster.
    env["UV_LINK_MODE"] = "hardlink"
    env.pop("VIRTUAL_ENV", None)
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    assert uv, "uv is installed by `make setup`"
    python = getattr(sys, "_base_executable", sys.executable)
    for stage, word, rest in instructions():
        if stage != "build":
            continue
        if word == "COPY":
            *sources, dest = shlex.split(rest)
            for source in sources:
                if (ROOT / source).is_dir():
                    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                    shutil.copytree(ROOT / source, src / dest, ignore=ignore, dirs_exist_ok=True)
                    continue
                target = src / dest / Path(source).name if dest.endswith("/") else src / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target)
        elif word == "RUN" and "uv sync" in rest:
            argv = shlex.split(rest)
            argv[0] = uv
            argv[argv.index("--python") + 1] = python
            done = subprocess.run(argv, cwd=src, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-2000:]
    yield venv


def _run(venv: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # From a folder outside the repository, so that only what the venv installed can be imported.
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        cwd=venv,
        env=env or {k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_entry_point_names_the_services_and_refuses_others(image_venv: Path) -> None:
    usage = _run(image_venv, "switchboard-service", "--help")
    assert usage.returncode == 0 and all(name in usage.stdout for name in MODULES)
    unknown = _run(image_venv, "switchboard-service", "mediaa")
    assert unknown.returncode == 2 and "unknown service 'mediaa'" in unknown.stderr
    assert _run(image_venv, "switchboard-service").returncode == 2
    # Installed, not linked to the checkout: the package data (migrations, web pages) is in site-packages.
    where = _run(image_venv, "python", "-c", "import services, switchboard_cli; print(services.__file__)")
    assert where.returncode == 0, where.stderr
    package = Path(where.stdout.strip()).parent
    assert package.is_relative_to(image_venv)
    for name, module in MODULES.items():
        main = package.parent / module.replace(".", "/")
        assert (main / "__main__.py").is_file() or main.with_suffix(".py").is_file(), name
    assert (package / "migrations" / "0001_foundation.sql").is_file()
    assert (package / "web" / "agent" / "index.html").is_file()


def test_the_image_runs_the_charts_migrate_command_and_the_api(image_venv: Path, infra: Infra) -> None:
    env = service_env(infra, SB_DATABASE_ADMIN_URL=infra.owner_url.rsplit("/", 1)[0] + "/postgres")
    env.pop("PYTHONPATH", None)
    migrate = _run(image_venv, "python", "-c", MIGRATE_SCRIPT, env=env)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    assert "migrations applied: []" in migrate.stdout  # the session had migrated: nothing to do
    port = free_port()
    env = service_env(infra, SB_HTTP_PORT=str(port), SB_LOG_LEVEL="warning")
    env.pop("PYTHONPATH", None)
    log = image_venv.parent / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(image_venv / "bin" / "switchboard-service"), "api"],
            cwd=image_venv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2, trust_env=False)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.1)
        assert health.json()["postgres"]["status"] == "ok"
        page = httpx.get(f"http://127.0.0.1:{port}/agent/", timeout=5, trust_env=False)
        assert page.status_code == 200 and "<html" in page.text.lower()
    finally:
        stop(proc)
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
    assert proc.returncode in (0, -signal.SIGTERM), log.read_text()[-2000:]
