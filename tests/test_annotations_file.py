"""The Downward API annotations file: kubelet's format, its atomic swap, and reading failures."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.sim.downward_api import DownwardAPIVolume, format_annotations, quote_go
from controller.sources.annotations import AnnotationFile, parse_annotations, unquote_go


@pytest.mark.parametrize(
    ("quoted", "value"),
    [
        ('""', ""),
        ('"true"', "true"),
        ('"say \\"hi\\""', 'say "hi"'),
        ('"C:\\\\path"', "C:\\path"),
        ('"line1\\nline2\\ttab"', "line1\nline2\ttab"),
        ('"\\x00\\x7f"', "\x00\x7f"),
        ('"caf\u00e9 \u65e5\u672c"', "caf\u00e9 \u65e5\u672c"),  # printable UTF-8 kept raw
        ('"\\u200b"', "\u200b"),  # non-printable BMP rune
        ('"\\U0001f600"', "\U0001f600"),
        ('"\\a\\b\\f\\r\\v"', "\a\b\f\r\v"),
        ('"\\xe2\\x82\\xac"', "\u20ac"),  # Go \\x escapes are bytes: this is UTF-8 for the euro
        ('"\\101"', "A"),  # octal
    ],
)
def test_unquote_go(quoted: str, value: str) -> None:
    assert unquote_go(quoted) == value


@pytest.mark.parametrize(
    ("quoted", "message"),
    [
        ("true", 'not a "double-quoted" string'),
        ('"unterminated', 'not a "double-quoted" string'),
        ('"a"b"', "an unescaped quote at character 2"),
        ('"bad \\q escape"', "an invalid escape at character 5"),
        ('"\\x4"', "an invalid escape at character 1"),
    ],
)
def test_unquote_go_errors(quoted: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        unquote_go(quoted)


@given(st.text())
def test_quote_then_unquote_round_trips(value: str) -> None:
    assert unquote_go(quote_go(value)) == value.encode("utf-8", "replace").decode(
        "utf-8", "replace"
    )


@given(
    st.dictionaries(st.from_regex(r"[a-z0-9.\-]{1,20}/[a-z0-9\-]{1,20}", fullmatch=True), st.text())
)
def test_kubelet_format_round_trips(annotations: dict[str, str]) -> None:
    clean = {k: v.encode("utf-8", "replace").decode() for k, v in annotations.items()}
    parsed = parse_annotations(format_annotations(clean))
    assert parsed.values == clean and parsed.errors == ()


def test_real_kubelet_output_with_a_large_json_annotation() -> None:
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "spec": {"x": "y" * 200_000, "q": 'a"b\\c'},
    }
    document = json.dumps(manifest) + "\n"
    text = (
        f"kubectl.kubernetes.io/last-applied-configuration={quote_go(document)}\n"
        'presence-controller/maintenance="Sat 02:00-04:00 Europe/Berlin"\n'
        'presence-controller/maintenance-reason="DB migration \\"v2\\" \u2013 see #ops"'
    )
    parsed = parse_annotations(text)
    assert json.loads(parsed.values["kubectl.kubernetes.io/last-applied-configuration"]) == manifest
    assert parsed.values["presence-controller/maintenance"] == "Sat 02:00-04:00 Europe/Berlin"
    assert (
        parsed.values["presence-controller/maintenance-reason"]
        == 'DB migration "v2" \u2013 see #ops'
    )
    assert "\n" not in text.split("\n")[0][-3:], "one line per annotation: newlines are escaped"


def test_bad_lines_are_reported_and_their_keys_marked_broken() -> None:
    parsed = parse_annotations(
        'a="1"\npresence-controller/maintenance=true\n\nno-equals-sign\nb="2"'
    )
    assert parsed.values == {"a": "1", "b": "2"}
    assert parsed.broken == {
        "presence-controller/maintenance": 'the value is not a "double-quoted" string',
    }
    assert parsed.errors[0].startswith("annotations line 2 (presence-controller/maintenance): ")
    assert parsed.garbled == "line 4 names no annotation key", "a line with no key: garbage"


def test_reads_follow_the_atomic_swap(tmp_path: Path) -> None:
    volume = DownwardAPIVolume(tmp_path / "podinfo")
    volume.write({"presence-controller/maintenance": "false"})
    file = AnnotationFile(volume.file)
    first = file.read()
    assert first.values == {"presence-controller/maintenance": "false"}
    assert file.read() is first, "unchanged file: not re-parsed"
    volume.write({"presence-controller/maintenance": "true", "other": "x"})
    assert file.read().values == {"presence-controller/maintenance": "true", "other": "x"}
    assert sorted(p.name for p in volume.directory.iterdir() if p.name.startswith("..2")) != []
    assert len([p for p in volume.directory.iterdir() if p.name.startswith("..2")]) == 1


def test_a_vanished_or_unreadable_file_keeps_the_last_good_annotations(tmp_path: Path) -> None:
    volume = DownwardAPIVolume(tmp_path)
    volume.write({"presence-controller/force": "unavailable"})
    file = AnnotationFile(volume.file)
    assert file.read().values == {"presence-controller/force": "unavailable"}
    os.unlink(tmp_path / "..data")  # the symlink target vanishes
    snapshot = file.read()
    assert snapshot.stale and snapshot.values == {"presence-controller/force": "unavailable"}
    assert (
        "unreadable (No such file or directory): keeping the last good annotations"
        in snapshot.errors[-1]
    )
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "annotations").mkdir()  # a directory where the file should be
    snapshot = file.read()
    assert snapshot.stale and "not a regular file (a directory)" in snapshot.errors[-1]
    (tmp_path / "..data" / "annotations").rmdir()
    (tmp_path / "..data" / "annotations").write_text('presence-controller/force="available"')
    snapshot = file.read()
    assert not snapshot.stale and snapshot.values == {"presence-controller/force": "available"}


def test_never_a_torn_read_while_rewritten_every_few_milliseconds(tmp_path: Path) -> None:
    volume = DownwardAPIVolume(tmp_path)
    versions = [
        {"presence-controller/maintenance-reason": f"v{i} " + "x" * 50_000} for i in range(2)
    ]
    volume.write(versions[0])
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            volume.write(versions[i % 2])
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        file = AnnotationFile(volume.file)
        seen = set()
        reads = 0
        deadline = time.monotonic() + 30  # the writer thread may be starved on a loaded machine
        while (reads < 400 or len(seen) < 2) and time.monotonic() < deadline:
            reads += 1
            snapshot = file.read()
            assert snapshot.values in versions, "a read mixed two versions"
            assert snapshot.errors == () or snapshot.stale
            seen.add(
                snapshot.values["presence-controller/maintenance-reason"][:2]
                if snapshot.values
                else ""
            )
    finally:
        stop.set()
        thread.join()
    assert {"v0", "v1"} <= seen


def test_changes_are_reported_by_version_not_identity(tmp_path: Path) -> None:
    volume = DownwardAPIVolume(tmp_path / "podinfo")
    volume.write({"presence-controller/maintenance": "false"})
    file = AnnotationFile(volume.file)
    first = file.read().version
    assert file.read().version == first, "unchanged file: same version"
    volume.write({"presence-controller/maintenance": "true"})
    second = file.read().version
    assert second > first
    (volume.directory / "..data").unlink()
    assert file.read().version > second, "going stale is a change too"
