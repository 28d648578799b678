"""Fault catalogue, part "files": the annotations file, the config file and the token file
replaced by garbage, a FIFO, /dev/zero or something huge. Garbage in a maintenance source fails
closed; what cannot be read keeps the last good values (reported); nothing blocks, nothing grows
without bound, nothing crashes."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest
from conftest import Sim, reason, running, until

from controller.bounded_read import FileTooLarge, NotARegularFile, read_bounded
from controller.config import ConfigError, load_settings
from controller.sim.downward_api import DownwardAPIVolume
from controller.sources.annotations import MAX_FILE_BYTES, AnnotationFile

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""

P = "presence-controller/"


def swap_in(volume: DownwardAPIVolume, make: str) -> None:
    """Replace the annotations file (through the `..data` link) by `make`: a FIFO, a link to
    /dev/zero, binary garbage, or a huge file."""
    target = volume.file.resolve()
    target.unlink()
    if make == "fifo":
        os.mkfifo(target)
    elif make == "zero":
        target.symlink_to("/dev/zero")
    elif make == "garbage":
        target.write_bytes(bytes(range(256)) * 64)
    elif make == "huge":
        target.write_bytes(b'a="' + b"x" * (MAX_FILE_BYTES + 10) + b'"')
    else:
        raise AssertionError(make)


@pytest.mark.parametrize("make", ["fifo", "zero"])
def test_a_fifo_or_device_is_unreadable_at_once_and_keeps_the_last_good(
    tmp_path: Path, make: str
) -> None:
    volume = DownwardAPIVolume(tmp_path / "podinfo")
    volume.write({P + "maintenance": "true"})
    file = AnnotationFile(volume.file)
    assert file.read().values == {P + "maintenance": "true"}
    swap_in(volume, make)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    snapshot = file.read()
    assert time.monotonic() - started < 1.0, "no blocking open, no endless read"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB
    assert snapshot.stale and snapshot.values == {P + "maintenance": "true"}
    assert "not a regular file" in snapshot.errors[-1]


@pytest.mark.parametrize("make", ["garbage", "huge"])
async def test_a_garbled_annotations_file_fails_closed(sim: Sim, tmp_path: Path, make: str) -> None:
    """An unreadable file keeps the last good values; one that reads as garbage may have lost
    the maintenance line: maintenance fails closed (ending it would fail open)."""
    volume = DownwardAPIVolume(tmp_path / "podinfo")
    volume.write({"app": "bot"})
    async with running(sim.settings(annotations_file=volume.file)) as run:
        await until(lambda: sim.gateway.presence == "available")
        swap_in(volume, make)
        await until(lambda: sim.gateway.presence == "unavailable")
        assert reason(run).startswith("maintenance: ")
        assert "maintenance fails closed" in reason(run)
        status = await run.status()
        assert status["maintenance"]["active"] is True
        assert len((await run.admin.get("/status")).content) < 64 * 1024, "errors are bounded"
        assert await run.metric("presence_annotation_invalid") >= 1
        volume.write({"app": "bot"})
        await until(lambda: sim.gateway.presence == "available")
    assert all("exception" not in line for line in run.log_events())


def test_read_bounded_refuses_what_is_not_a_small_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFile, match="a FIFO"):
        read_bounded(fifo, 1024)
    with pytest.raises(NotARegularFile, match="a device or socket"):
        read_bounded("/dev/zero", 1024)
    with pytest.raises(NotARegularFile, match="a directory"):
        read_bounded(tmp_path, 1024)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2049)
    with pytest.raises(FileTooLarge, match="larger than 2 KiB"):
        read_bounded(big, 2048)
    assert read_bounded(big, 4096) == b"x" * 2049


def base_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESENCE_HEALTH_URL", "http://127.0.0.1:1/healthz")
    monkeypatch.setenv("PRESENCE_WAWP__INSTANCE_ID", "instance-1")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("fifo", "not a regular file (a FIFO)"),
        ("zero", "not a regular file (a device or socket)"),
        ("huge", "larger than 256 KiB"),
        ("binary", "is not UTF-8 text"),
    ],
)
def test_a_hostile_config_file_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: str, message: str
) -> None:
    base_env(monkeypatch)
    monkeypatch.setenv("PRESENCE_WAWP__ACCESS_TOKEN", "k3j5h6g7f8d9")
    path = tmp_path / "presence.yaml"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "zero":
        path.symlink_to("/dev/zero")
    elif make == "huge":
        path.write_text("# " + "x" * 300_000 + "\n")
    else:
        path.write_bytes(b"\xff\xfe" * 10)
    monkeypatch.setenv("PRESENCE_CONFIG_FILE", str(path))
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert time.monotonic() - started < 5.0
    (error,) = caught.value.errors
    assert error.startswith("PRESENCE_CONFIG_FILE: ") and message in error, error


@pytest.mark.parametrize(
    ("make", "message"),
    [("fifo", "not a regular file (a FIFO)"), ("zero", "not a regular file (a device")],
)
def test_a_hostile_token_file_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: str, message: str
) -> None:
    base_env(monkeypatch)
    path = tmp_path / "access-token"
    if make == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    monkeypatch.setenv("PRESENCE_WAWP__ACCESS_TOKEN_FILE", str(path))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    (error,) = caught.value.errors
    assert "cannot read access token file" in error and message in error, error
