"""`kubectl presence` (the console script `kubectl-presence`; kubectl runs it as a plugin once
it is on PATH). Exit codes as the controller's commands: 0 done, 1 failed (the API server said
no, the object is not there), 2 a usage error (nothing was sent)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller.exits import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from controller.plugin import edits, view
from controller.plugin.edits import Edit, UsageError
from controller.runtime.clock import SYSTEM

TIMEOUT = 10.0


def _common(defaults: bool) -> argparse.ArgumentParser:
    """kubectl's options, before or after the command (`-n NS status`, `status -n NS`): only
    the top level has defaults, so a subcommand never overwrites what was given before it."""
    common = argparse.ArgumentParser(add_help=False)
    keep: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    common.add_argument("-n", "--namespace", help="the namespace (default: the context's)", **keep)
    common.add_argument("--context", help="the kubeconfig context to use", **keep)
    common.add_argument("--kubeconfig", type=Path, help="default: KUBECONFIG", **keep)
    output: dict[str, Any] = {"default": "text"} if defaults else keep
    common.add_argument("-o", "--output", choices=["text", "json"], **output)
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common(defaults=False)
    writes = argparse.ArgumentParser(add_help=False, parents=[common])
    writes.add_argument(
        "--dry-run", nargs="?", const="client", default="none",
        choices=["none", "client", "server"],
        help="client: print the change, send nothing; server: the API server checks it, "
        "stores nothing",
    )  # fmt: skip
    writes.add_argument(
        "--namespace-wide", action="store_true",
        help="annotate the Namespace (controllers with PRESENCE_KUBE__WATCH_NAMESPACE=true)",
    )  # fmt: skip
    writes.add_argument("--prefix", default="presence-controller/", help="annotation prefix")
    parser = argparse.ArgumentParser(
        prog="kubectl presence", parents=[_common(defaults=True)],
        description="Declare maintenance and see what a WhatsApp bot shows, and why.",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("status", parents=[common], help="what the bot shows, why, what next")
    show.add_argument("target", help="deploy/NAME, statefulset/NAME or pod/NAME")
    maintenance = sub.add_parser("maintenance", help="start or end maintenance")
    actions = maintenance.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", parents=[writes], help="take the bot offline")
    start.add_argument("target", nargs="?", help="deploy/NAME (not with --namespace-wide)")
    _ends(start)
    start.add_argument("--windows", help="a window spec instead: 'Sat 02:00-04:00 Europe/Berlin'")
    start.add_argument("--reason", help="shown in reasons, /status, logs and Events")
    end = actions.add_parser("end", parents=[writes], help="end maintenance")
    end.add_argument("target", nargs="?")
    force = sub.add_parser("force", parents=[writes], help="force a presence, or clear it")
    force.add_argument("state", choices=["available", "unavailable", "clear"])
    force.add_argument("target", nargs="?")
    _ends(force)
    windows = sub.add_parser("windows", help="check a window spec: its next activations")
    windows.add_argument("spec")
    windows.add_argument("--count", type=int, default=5)
    windows.add_argument("--from", dest="start", help="RFC 3339 instant (default: now)")
    windows.add_argument("--holidays", help="holiday regions closing them, 'DE-BY,AT'")
    return parser


def _ends(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--for", dest="duration", help="how long: 30m, 2h, 1d")
    parser.add_argument("--until", help="RFC 3339: 2026-12-24T06:00:00Z")
    parser.add_argument("--indefinitely", action="store_true", help="no end: until removed")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "windows":
            from controller.windows_report import windows_report

            return windows_report(args.spec, args.count, args.start, args.holidays)
        edit = None if args.command == "status" else _edit(args)
        return asyncio.run(_run(args, edit))
    except UsageError as exc:
        print(f"kubectl presence: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _edit(args: argparse.Namespace) -> Edit:
    at = SYSTEM.wall()
    if args.namespace_wide and args.target:
        raise UsageError("--namespace-wide annotates the Namespace: give no deploy/NAME")
    if not args.namespace_wide and not args.target:
        raise UsageError("which workload? deploy/NAME (or --namespace-wide)")
    if args.command == "force":
        return edits.force(args.prefix, args.state, at, duration=args.duration,
                           until=args.until, indefinitely=args.indefinitely)  # fmt: skip
    if args.action == "end":
        return edits.maintenance_end(args.prefix)
    return edits.maintenance_start(
        args.prefix, at, duration=args.duration, until=args.until, windows=args.windows,
        indefinitely=args.indefinitely, reason=args.reason,
    )  # fmt: skip


async def _run(args: argparse.Namespace, edit: Edit | None) -> int:
    from controller.kube.client import KubeClient, KubeError

    target = view.parse_target(args.target) if args.target else None
    try:
        client = KubeClient(args.namespace, TIMEOUT, args.kubeconfig, context=args.context)
    except (ValueError, OSError) as exc:
        print(f"kubectl presence: kubeconfig: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if edit is None:
            assert target is not None
            doc = await view.status(client, target, SYSTEM.wall())
            print(json.dumps(doc, indent=2) if args.output == "json" else view.render(doc))
            return EXIT_OK
        return await _write(client, args, target, edit)
    except KubeError as exc:
        print(f"kubectl presence: {_kube_error(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await client.aclose()


async def _write(client: Any, args: argparse.Namespace, target: Any, edit: Edit) -> int:
    """Patch the workload (fleet mode), its pods (single-replica mode) or the Namespace."""
    patch = {"metadata": {"annotations": edit.annotations}}
    objects: list[tuple[str, str]] = []
    if args.namespace_wide:
        objects = [("namespaces", client.namespace)]
    else:
        workload = await view.read_workload(client, target)
        if workload.fleet or target.plural == "pods":
            objects = [(target.plural, target.name)]
        else:
            pods = await view.pods_of(client, workload)
            objects = [("pods", p["metadata"]["name"]) for p in pods]
            print(
                f"note: {target} runs the controller without fleet mode (PRESENCE_KUBE__ENABLED "
                f"is not true in its pod template): annotating its {len(pods)} pod(s), which a "
                "replacement pod does not inherit",
                file=sys.stderr,
            )
    results = []
    for plural, name in objects:
        shown = f"{view.SINGULAR.get(plural, 'namespace')}/{name}"
        if args.dry_run == "client":
            results.append({"object": shown, "patch": patch})
        else:
            done = await client.patch(plural, name, patch, dry_run=args.dry_run == "server")
            results.append({"object": shown, "annotations": view.annotations_of(done)})
    dry = {"client": " (dry run)", "server": " (server dry run)"}.get(args.dry_run, "")
    if args.output == "json":
        print(
            json.dumps({"says": edit.says, "dry_run": args.dry_run, "results": results}, indent=2)
        )
    else:
        for result in results:
            print(f"{result['object']} annotated{dry}: {edit.says}")
        if args.namespace_wide:
            print("note: honoured by controllers with PRESENCE_KUBE__WATCH_NAMESPACE=true")
    return EXIT_OK


def _kube_error(exc: Any) -> str:
    if exc.code == 403:
        return f"forbidden: {exc.message} (your role needs get and patch on it)"
    return str(exc.message or exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
