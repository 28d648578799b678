"""Every `kubectl` command in the docs works as pasted against the example overlay: the
namespace, label selector, named resources, container, ports and Secret keys it uses exist in the
rendered manifests, annotation keys and values are ours and valid, and a backgrounded
port-forward is never raced by the command after it."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from manifests import GATEWAY_COMPONENTS, OVERLAY, ROOT, render, secret_references, with_components

from controller.core.annotations import FORCE, FORCE_UNTIL, MAINTENANCE, MAINTENANCE_REASON
from controller.core.schedule import ScheduleError
from controller.core.schedule_grammar import parse

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NAMESPACED = {"annotate", "exec", "port-forward", "logs", "get", "describe", "rollout", "patch"}
PREFIX = "presence-controller/"
KEYS = {MAINTENANCE, MAINTENANCE_REASON, FORCE, FORCE_UNTIL}
ADMIN_PATHS = {"/status", "/healthz", "/readyz", "/metrics"}
OPERATORS = {"&&", "||", ";", "|", "&"}


@dataclass
class Command:
    doc: str
    words: list[str]
    background: bool = False
    flags: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.doc}: {shlex.join(self.words)}"


def shell_blocks(path: Path) -> Iterator[str]:
    """The fenced sh/bash/console blocks, and inline code that starts with `kubectl `."""
    text = path.read_text()
    for match in re.finditer(r"^( *)```(?:sh|bash|console)\n(.*?)^\1```", text, re.M | re.S):
        yield "\n".join(line.removeprefix(match[1]) for line in match[2].splitlines())
    for match in re.finditer(r"(?<!`)`(kubectl [^`]+)`(?!`)", text):
        if len(match[1].split()) > 3:  # `kubectl apply -k` in prose names a command, runs none
            yield match[1]


def commands(path: Path) -> Iterator[Command]:
    """Each simple command of each block (continuations joined, comments dropped), split at
    `&&`, `;`, `|` and `&`; `background` marks one followed by `&`."""
    for block in shell_blocks(path):
        script = re.sub(r"\\\n", " ", block)
        for line in script.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words: list[str] = []
            redirect = False
            for token in lexer:
                if redirect or re.fullmatch(r"\d?>>?(&\d)?", token):
                    redirect = token.endswith(">")  # `> FILE`: the file name comes next
                    continue
                if re.match(r"\d?>", token):  # `>/dev/null`, `2>&1`
                    continue
                if token in OPERATORS:
                    if words:
                        yield Command(path.name, words, background=token == "&")
                    words = []
                else:
                    words.append(token)
            if words:
                yield Command(path.name, words)


def parse_kubectl(command: Command) -> Command:
    """Split a kubectl command into flags (`-n`, `--namespace=...`) and positional args; args
    after `--` (the command run by exec) are dropped."""
    words = command.words[1:]
    takes_value = {"-n", "--namespace", "-l", "--selector", "-c", "--container", "-k", "-f", "-p"}
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--":
            break
        if word.startswith("--") and "=" in word:
            name, _, value = word.partition("=")
            command.flags.setdefault(name, value)
        elif word in takes_value:
            command.flags[word] = words[index + 1]
            index += 1
        elif word.startswith("-"):
            command.flags.setdefault(word, "")
        else:
            command.args.append(word)
        index += 1
    for short, long in (("-n", "--namespace"), ("-l", "--selector"), ("-c", "--container")):
        if long in command.flags:
            command.flags[short] = command.flags.pop(long)
    return command


def all_commands() -> list[Command]:
    return [c for doc in DOCS for c in commands(doc)]


def kubectl_commands() -> list[Command]:
    return [parse_kubectl(c) for c in all_commands() if c.words[0] == "kubectl"]


@pytest.fixture(scope="module")
def overlay() -> dict[str, Any]:
    docs = render(OVERLAY)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]
    namespace = next(d for d in docs if d["kind"] == "Namespace")
    return {
        "namespace": namespace["metadata"]["name"],
        "deployments": {deployment["metadata"]["name"]},
        "pod_labels": pod["metadata"]["labels"],
        "containers": {c["name"]: c for c in pod["spec"]["containers"]},
        "secrets": secret_references(pod["spec"]),
        # A gateway component brings its own Secret (docs: "Gateways").
        "component_secrets": {
            name: keys
            for component in GATEWAY_COMPONENTS
            for name, keys in secret_references(
                next(d for d in with_components(component) if d["kind"] == "Deployment")["spec"][
                    "template"
                ]["spec"]
            ).items()
        },
    }


def _labels(selector: str) -> dict[str, str]:
    pairs = [part.split("=", 1) for part in selector.split(",")]
    assert all(len(p) == 2 for p in pairs), f"only equality selectors are checked: {selector}"
    return dict(pairs)


def check_resource(command: Command, overlay: dict[str, Any]) -> None:
    """The resource the command names exists in the overlay (placeholders `<pod>` pass)."""
    verb = command.args[0]
    targets = command.args[1:]
    if verb == "rollout":
        targets = targets[1:]
    if not targets:
        return
    target = targets[0]
    kind, _, name = target.partition("/")
    if not name and len(targets) > 1 and kind in {"deploy", "deployment"}:
        name = targets[1]
    if kind in {"deploy", "deployment", "deployments"} and name:
        assert name in overlay["deployments"], f"{command}: no Deployment {name!r}"
    elif kind in {"pod", "pods", "po"}:
        selector = command.flags.get("-l")
        if selector is not None:
            labels = _labels(selector)
            assert labels.items() <= overlay["pod_labels"].items(), (
                f"{command}: selector {selector!r} matches no pod (pods have "
                f"{overlay['pod_labels']})"
            )
        else:
            assert name.startswith("<") or name == "", f"{command}: a real pod name"
    container = command.flags.get("-c")
    if container is not None:
        assert container in overlay["containers"], f"{command}: no container {container!r}"


def check_annotations(command: Command) -> None:
    """Our annotation keys exist, and a maintenance value parses."""
    for arg in command.args[2:]:
        key, sep, value = arg.partition("=")
        key = key.rstrip("-")
        if not key.startswith(PREFIX):
            continue
        assert key.removeprefix(PREFIX) in KEYS, f"{command}: unknown annotation {key!r}"
        if sep and key == PREFIX + "maintenance" and not value.startswith("$("):
            try:
                parse(value)
            except ScheduleError as exc:
                pytest.fail(f"{command}: {exc}")


def check_secret(command: Command, overlay: dict[str, Any]) -> None:
    name = command.args[3]
    keys = set()
    for flag, value in command.flags.items():
        if flag in {"--from-literal", "--from-file"}:
            keys.add(value.split("=", 1)[0])
    for word in command.words:
        if word.startswith(("--from-literal=", "--from-file=")):
            keys.add(word.split("=", 2)[1])
    secrets = {**overlay["component_secrets"], **overlay["secrets"]}
    assert name in secrets, f"{command}: the pod reads no Secret {name!r}"
    assert keys == secrets[name], f"{command}: keys {keys} != read {secrets[name]}"


def check_port_forward(command: Command, overlay: dict[str, Any]) -> tuple[int, int]:
    local, _, remote = command.args[2].partition(":")
    ports = {p["containerPort"] for c in overlay["containers"].values() for p in c["ports"]}
    assert int(remote or local) in ports, f"{command}: no container port {remote or local}"
    return int(local), int(remote or local)


def test_the_docs_have_the_commands_this_test_checks() -> None:
    found = kubectl_commands()
    verbs = {c.args[0] for c in found}
    assert {"apply", "create", "annotate", "exec", "port-forward", "rollout"} <= verbs
    assert len(found) >= 20


@pytest.mark.parametrize("command", kubectl_commands(), ids=str)
def test_each_kubectl_command_matches_the_overlay(
    command: Command, overlay: dict[str, Any]
) -> None:
    verb = command.args[0]
    if verb == "create" and command.args[1] == "namespace":
        assert command.args[2] == overlay["namespace"]
        return
    if verb == "apply":
        target = command.flags.get("-k") or command.flags.get("-f")
        assert target is not None, f"{command}: apply -k or -f"
        # The docs copy the example overlay to my-bot first (`cp -r`).
        path = ROOT / target.replace("overlays/my-bot", "overlays/example")
        assert path.exists(), f"{command}: no {target}"
        return
    if verb == "kustomize":
        return
    if "-A" in command.flags or "--all-namespaces" in command.flags:
        return
    if verb == "presence" and command.args[1:2] == ["windows"]:
        return  # the plugin's window check reads no cluster
    assert command.flags.get("-n") == overlay["namespace"], (
        f"{command}: needs -n {overlay['namespace']} (the overlay's namespace)"
    )
    if verb == "create":
        assert command.args[1:3] == ["secret", "generic"], command
        check_secret(command, overlay)
        return
    if verb == "presence":  # the plugin (docs/maintenance.md): a workload of the overlay
        assert "deploy/whatsapp-bot" in command.args, command
        return
    assert verb in NAMESPACED, f"{command}: add the verb to this test"
    check_resource(command, overlay)
    if verb == "annotate":
        check_annotations(command)
    if verb == "port-forward":
        check_port_forward(command, overlay)


def local(words: list[str]) -> bool:
    """A curl to this machine (a forwarded port), not to a gateway's own API."""
    return any("localhost" in w or "127.0.0.1" in w for w in words)


def test_port_forwards_are_not_raced_and_curl_hits_the_forwarded_admin_paths(
    overlay: dict[str, Any],
) -> None:
    """A backgrounded port-forward needs a moment to listen: the next curl must retry on
    connection refused, and every curl must target a forwarded admin path."""
    checked = 0
    for doc in DOCS:
        forwarded: int | None = None
        waited = False
        for command in commands(doc):
            if command.words[0] == "kubectl" and "port-forward" in command.words:
                forwarded, _ = check_port_forward(parse_kubectl(command), overlay)
                assert command.background, f"{command}: run it in the background (&)"
                waited = False
            elif command.words[0] == "curl" and forwarded is not None and local(command.words):
                url = next(w for w in command.words if "localhost" in w or "127.0.0.1" in w)
                match = re.fullmatch(r"(?:http://)?(?:localhost|127\.0\.0\.1):(\d+)(/\w+)", url)
                assert match is not None, f"{command}: expected localhost:PORT/path"
                assert int(match[1]) == forwarded, f"{command}: port {match[1]} not forwarded"
                assert match[2] in ADMIN_PATHS, f"{command}: no admin path {match[2]}"
                if not waited:
                    assert "--retry-connrefused" in command.words, (
                        f"{command}: races the port-forward (add --retry-connrefused)"
                    )
                    waited = True
                checked += 1
    assert checked >= 3
