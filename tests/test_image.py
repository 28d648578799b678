"""The container image, offline: hadolint, what the build context holds, and that the controller
runs without writing to its filesystem (so a read-only root filesystem works)."""

from __future__ import annotations

import asyncio
import fnmatch
import re
import shutil
import signal
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from conftest import Sim

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_hadolint_is_clean_at_warning_level() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    command = [hadolint, "--failure-threshold", "warning", str(ROOT / "Dockerfile")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shape() -> None:
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert len(stages) == 2, "multi-stage"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert base is not None and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1))
    final = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER \d+:\d+$", final, re.M), "a fixed numeric non-root user"
    assert 'ENTRYPOINT ["presence-controller"]' in final and 'CMD ["run"]' in final
    assert not re.search(r"apt-get|gcc|pip install", final), "nothing built in the final stage"
    assert "--constraint constraints.txt" in DOCKERFILE


def build_context() -> list[Path]:
    """The files .dockerignore lets into the build context."""
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [r for r in rules if r and not r.startswith("#")]
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    kept = []
    for name in files:
        keep = True
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(name, pattern) or name.startswith(pattern + "/"):
                keep = negate
        if keep:
            kept.append(Path(name))
    return kept


def test_the_build_context_is_just_enough_to_install(tmp_path: Path) -> None:
    context = build_context()
    assert {p.parts[0] for p in context} == {
        "pyproject.toml",
        "constraints.txt",
        "README.md",
        "controller",
    }
    for path in context:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    out = tmp_path / "dist"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run([*command, "-q", "-w", str(out), str(tmp_path)], check=True, capture_output=True)
    (wheel,) = out.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "controller/cli.py" in names and "controller/core/schedule.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "presence-controller = controller.cli:main" in text


def test_constraints_pin_every_runtime_dependency() -> None:
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in declared:
        name = re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, name


WATCH_WRITES = """
import os, sys
def hook(event, args):
    path = None
    if event == "open" and isinstance(args[0], str):
        mode, flags = args[1] or "", args[2] or 0
        if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            path = args[0]
    elif event in ("os.mkdir", "os.rename", "os.remove", "os.symlink", "os.truncate"):
        path = str(args[0])
    if path and not path.startswith("/dev/"):
        os.write(2, f"WRITE {event} {path}\\n".encode())
sys.addaudithook(hook)
from controller.cli import main
sys.exit(main(["run"]))
"""


async def test_the_controller_writes_no_files_at_run_time(sim: Sim, tmp_path: Path) -> None:
    annotations = tmp_path / "annotations"
    annotations.write_text('presence-controller/maintenance="false"')
    env = sim.env(
        PRESENCE_ANNOTATIONS_FILE=str(annotations),
        PYTHONDONTWRITEBYTECODE="1",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        OTEL_EXPORTER_OTLP_TIMEOUT="1",  # give up retrying quickly: exit is not the point here
    )
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WATCH_WRITES, env=env, cwd=tmp_path, stdout=pipe, stderr=pipe
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while sim.gateway.presence != "available":
        assert loop.time() < deadline
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0
    writes = [line for line in err.decode().splitlines() if line.startswith("WRITE ")]
    assert writes == [], writes
    assert sim.gateway.presence == "unavailable"


def test_the_image_sets_the_environment_the_benchmarks_measure() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from image_env import IMAGE_ENV

    final = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    for name, value in IMAGE_ENV.items():
        assert f"{name}={value}" in final, name


def test_the_project_metadata_installs_without_setuptools_warnings() -> None:
    """No install prints "project.license as a TOML table is deprecated"."""
    script = (
        "from setuptools.dist import Distribution\n"
        "from setuptools.config.pyprojecttoml import apply_configuration\n"
        "apply_configuration(Distribution(), 'pyproject.toml')\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
