"""`presence-controller` command line: run, demo, sim, check-config, check-gateway (its work in
check_gateway.py), windows, replay (its work in replay/); exit codes in exits.py."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from controller import __version__
from controller.config import ConfigError, Settings, load_settings, reference_markdown
from controller.core.types import Presence
from controller.exits import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from controller.redaction import redact_url
from controller.replay.arguments import add_parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="presence-controller",
        description="Keep a WhatsApp bot's presence honest: online only while its consumer is "
        "healthy and keeping up. Configured from PRESENCE_* environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="run the controller from the environment/config file")
    _simulation_parsers(sub)
    check = sub.add_parser("check-config", help="validate and print the effective config")
    check.add_argument(
        "--reference", action="store_true", help="print the configuration reference table instead"
    )
    windows = sub.add_parser(
        "windows", help="check a window spec: print its next activations, or the parse error"
    )
    windows.add_argument("spec", help="e.g. 'Mon-Fri 22:00-06:00 Europe/Berlin'")
    windows.add_argument("--count", type=int, default=5, help="activations to show (default 5)")
    windows.add_argument(
        "--from", dest="start", metavar="T", help="RFC 3339 start time (default: now)"
    )
    windows.add_argument(
        "--holidays", metavar="CODES", help="online hours closed on these holidays: 'DE-BY,AT'"
    )
    add_parser(sub, _seconds)
    _check_gateway_parser(sub)
    return parser


def _simulation_parsers(sub: Any) -> None:
    """`demo` and `sim`."""
    demo = sub.add_parser(
        "demo", help="run the real controller against a simulated consumer and gateway"
    )
    demo.add_argument(
        "--fleet",
        action="store_true",
        help="the fleet scene: three replicas in fleet mode, a fake Kubernetes API server",
    )
    demo.add_argument(
        "--witness",
        action="store_true",
        help="the witness scene: a reconnect marks the bot online during maintenance; the "
        "witness sees it and has it corrected (WhatsApp model `ideal`)",
    )
    _provider_option(demo)
    _profile_option(demo)
    demo.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="time scale of the scenario (2 = twice as fast); default 1",
    )
    simulate = sub.add_parser(
        "sim",
        help="start the simulated consumer, gateway and Kubernetes API server on loopback "
        "(for kubectl and a controller to try against); runs until SIGTERM",
    )
    _provider_option(simulate)
    _profile_option(simulate)
    simulate.add_argument(
        "--fleet",
        action="store_true",
        help="also hold Namespace whatsapp-bot and Deployment whatsapp-bot (with its pods)",
    )


def _check_gateway_parser(sub: Any) -> None:
    gateway = sub.add_parser("check-gateway", help="preflight: credentials and session state")
    action = gateway.add_mutually_exclusive_group()
    action.add_argument(
        "--set",
        choices=[Presence.AVAILABLE.value, Presence.UNAVAILABLE.value],
        help="also try one set-presence call",
    )
    action.add_argument(
        "--probe",
        action="store_true",
        help="CHANGES THE PRESENCE: try the known set-presence vocabularies (ending on "
        "unavailable) and print the settings the gateway accepts",
    )
    action.add_argument(
        "--witness",
        action="store_true",
        help="CHANGES THE PRESENCE: one witness calibration run (how soon a write is seen, how "
        "long available lasts) and the settings it suggests (docs/witness.md)",
    )
    gateway.add_argument(
        "--force",
        action="store_true",
        help="fleet mode: --set, --probe or --witness even on a follower (the leader "
        "overwrites it)",
    )


def _provider_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider",
        choices=["wawp", "waha", "evolution"],
        default="wawp",
        help="the simulated gateway's API (default wawp)",
    )


def _profile_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        type=_profile,
        default=None,
        help="what the simulated WhatsApp shows contacts after a write: ideal, baileys (the "
        "default: available fades after 10 s), waha-noweb, evolution-always-online or silent "
        '(README, "What contacts see")',
    )


def _profile(value: str) -> str:
    """A WhatsApp model profile; imported only for `demo` and `sim` (the simulators are not
    loaded into a controller that runs: they cost it memory)."""
    from controller.sim.whatsapp import profile

    try:
        return profile(value).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _speed(value: str) -> float:
    """A positive, finite time scale for the demo."""
    try:
        speed = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not 0.1 <= speed <= 10:
        raise argparse.ArgumentTypeError(f"expected a speed between 0.1 and 10, got {value!r}")
    return speed


def _seconds(value: str) -> float:
    from controller.config import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not isinstance(seconds, float) or not 0 < seconds < 1e9:
        raise argparse.ArgumentTypeError(f"expected a positive duration, got {value!r}")
    return seconds


def _load() -> Settings | None:
    from controller.telemetry.tracing import tracing_errors

    errors = tracing_errors(os.environ)
    settings = None
    try:
        settings = load_settings()
    except ConfigError as exc:
        errors = exc.errors + errors
    if not errors:
        return settings
    count = f"{len(errors)} error" + ("s" if len(errors) != 1 else "")
    print(f"presence-controller: invalid configuration ({count}):", file=sys.stderr)
    for error in errors:
        print(f"  - {error}", file=sys.stderr)
    return None


def _tracing_summary() -> dict[str, object]:
    """What tracing will do, from the OTEL_* variables (header values are never printed)."""
    from controller.telemetry.tracing import SERVICE_NAME

    env = os.environ
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318 (SDK default)"
    )
    headers = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS")
    return {
        "exporter": env.get("OTEL_TRACES_EXPORTER", "otlp"),
        "endpoint": redact_url(endpoint),
        "headers": "set (not shown)" if headers else None,
        "service_name": env.get("OTEL_SERVICE_NAME", SERVICE_NAME),
        "sampler": env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on (SDK default)"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from controller.sim.whatsapp import DEFAULT_PROFILE

        profile = args.profile or DEFAULT_PROFILE
        if args.fleet:
            from controller.sim.fleet_scenario import run_fleet_demo

            return asyncio.run(run_fleet_demo(speed=args.speed, profile=profile))
        if args.witness:
            from controller.sim.witness_scenario import run_witness_demo

            return asyncio.run(run_witness_demo(speed=args.speed, provider=args.provider))
        from controller.sim.scenario import run_demo

        return asyncio.run(run_demo(speed=args.speed, provider=args.provider, profile=profile))
    if args.command == "sim":
        from controller.sim.launch import run_sim
        from controller.sim.whatsapp import DEFAULT_PROFILE

        return asyncio.run(
            run_sim(args.provider, args.fleet, profile=args.profile or DEFAULT_PROFILE)
        )
    if args.command == "windows":
        from controller.windows_report import windows_report

        return windows_report(args.spec, args.count, args.start, args.holidays)
    if args.command == "replay":
        from controller.replay.command import main as replay

        return replay(args)
    if args.command == "check-config" and args.reference:
        print(reference_markdown(), end="")
        return EXIT_OK
    settings = _load()
    if settings is None:
        return EXIT_CONFIG
    if args.command == "check-config":
        print(json.dumps({**settings.masked(), "tracing": _tracing_summary()}, indent=2))
        return EXIT_OK
    if args.command == "check-gateway":
        from controller.check_gateway import check_gateway

        return asyncio.run(
            check_gateway(settings, args.set, args.probe, force=args.force, witness=args.witness)
        )
    return _run(settings)


def _run(settings: Settings) -> int:
    from controller.telemetry.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level, settings.secrets())
    try:
        asyncio.run(serve(settings))
    except OSError as exc:
        # Typically the admin port is taken: a start-up error, not something to retry in a loop.
        print(f"presence-controller: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def serve(settings: Settings) -> None:
    """Run the controller and its admin server until SIGTERM or SIGINT."""
    from controller.runtime.clock import SYSTEM
    from controller.runtime.controller import Controller
    from controller.runtime.listen import bind
    from controller.runtime.shutdown import SHUTDOWN_DEADLINE
    from controller.telemetry.metrics import Metrics
    from controller.telemetry.tracing import SHUTDOWN_FLUSH, setup_tracing

    stop = asyncio.Event()
    stopped_at: list[float] = []

    def on_signal() -> None:
        stopped_at.append(SYSTEM.now())
        stop.set()

    loop = asyncio.get_running_loop()
    # SIGHUP too: a closed terminal or a supervisor's hang-up must not skip the shutdown write.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal)
    metrics = Metrics()
    tracing = setup_tracing(metrics)
    controller = Controller(settings, metrics=metrics, tracer=tracing.tracer)
    # Bind the admin port first (a taken port fails here, before any tick or gateway call),
    # then start ticking while aiohttp, needed only by the admin server, imports in a thread.
    sock = bind(*settings.listen_host_port)
    _log_start(settings, controller.gateway.provider, sock.getsockname())
    running = asyncio.create_task(controller.run(stop))
    try:
        admin = await asyncio.to_thread(importlib.import_module, "controller.runtime.admin")
        async with admin.AdminServer(controller, sock=sock):
            await running
    finally:
        if not running.done():
            stop.set()
            await running
        # Flush spans with what is left of the shutdown deadline, never more (and at most
        # SHUTDOWN_FLUSH: an unreachable collector must not hold up the exit).
        spent = SYSTEM.now() - stopped_at[0] if stopped_at else 0.0
        budget = min(SHUTDOWN_FLUSH, max(0.2, SHUTDOWN_DEADLINE - spent - 0.3))
        if not await asyncio.to_thread(tracing.shutdown, budget):
            message = f"trace export did not finish within {budget:.1f}s: unsent spans dropped"
            logging.getLogger("presence.telemetry").warning(message)


def _log_start(settings: Settings, provider: str, address: tuple[Any, ...]) -> None:
    """One line with the effective mode, so an operator sees at once what this process does."""
    from controller.telemetry.logs import event

    s = settings
    mode = "dry run (decides and reports, calls no gateway)" if s.dry_run else "live"
    lag = (
        f"lag {s.lag_metric} from {redact_url(str(s.metrics_url))}"
        if s.metrics_url
        else "no lag signal"
    )
    admin = (
        f"{address[0]}:{address[1]}" if ":" not in address[0] else f"[{address[0]}]:{address[1]}"
    )
    message = (
        f"presence-controller {__version__} started: {mode}, provider {provider}, "
        f"interval {s.interval:g}s (timeout {s.timeout:g}s, rise {s.rise}, fall {s.fall}, "
        f"hold-down {s.hold_down:g}s), {lag}, admin on {admin}"
    )
    fields = {"version": __version__, "dry_run": s.dry_run, "provider": provider}
    event(logging.getLogger("presence"), logging.INFO, "start", message, **fields, admin=admin)
