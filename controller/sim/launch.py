"""`presence-controller sim`: the simulated consumer, gateway and Kubernetes API server on
loopback, from the shell, until SIGTERM or SIGINT.

It prints one line per simulator (`consumer URL`, `gateway PROVIDER URL`, `kube URL`,
`kubeconfig PATH`) and nothing else on stdout. The API server speaks HTTPS with a CA made at start;
the kubeconfig trusts it and carries a token, so the real `kubectl` and a controller in fleet
mode (KUBECONFIG=PATH) can use it. With `--fleet` it holds Namespace `whatsapp-bot` and, there,
Deployment `whatsapp-bot` with its ReplicaSet and three pods (the pod names a fleet-mode controller
takes as PRESENCE_KUBE__POD_NAME are printed on stderr).
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

from controller.sim.consumer import SimConsumer
from controller.sim.gateway import SimGateway
from controller.sim.harness import as_environment, witness_values
from controller.sim.kube import SimKube
from controller.sim.kube_discovery import write_kubeconfig
from controller.sim.server import LoopbackServer
from controller.sim.tls import make_tls
from controller.sim.whatsapp import DEFAULT_PROFILE
from controller.sim.witness import SimWitness

NAMESPACE = WORKLOAD = "whatsapp-bot"
PODS = [f"{WORKLOAD}-7d4b9-{suffix}" for suffix in ("x2k9p", "m8q4z", "c5v7n")]
WEBHOOK = "http://127.0.0.1:8090/witness/events"
"""Where the simulated Evolution witness posts: a controller on the default PRESENCE_LISTEN."""


async def run_sim(
    provider: str, fleet: bool, stop: asyncio.Event | None = None, profile: str = DEFAULT_PROFILE
) -> int:
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    token = secrets.token_urlsafe(24)
    kube = SimKube(tokens={token: "admin"})
    if fleet:
        kube.put("namespaces", {"metadata": {"name": NAMESPACE}})
        kube.workload(NAMESPACE, WORKLOAD, PODS)
    with tempfile.TemporaryDirectory(prefix="presence-sim-") as tmp:
        work = Path(tmp)
        tls = make_tls(work / "tls")
        async with AsyncExitStack() as stack:
            consumer = await stack.enter_async_context(LoopbackServer(SimConsumer().app()))
            simulated = SimGateway(provider=provider, profile=profile)
            # A witness session beside the bot's; Evolution's webhooks go to a controller on
            # the default admin address.
            simulated.witness = SimWitness(simulated, webhook=WEBHOOK)
            gateway = await stack.enter_async_context(LoopbackServer(simulated.app()))
            api = await stack.enter_async_context(
                LoopbackServer(kube.app(), ssl_context=tls.context)
            )
            config = write_kubeconfig(work / "kubeconfig", api.url, token, NAMESPACE, tls.ca_pem)
            print(f"consumer {consumer.url}")
            print(f"gateway {provider} {gateway.url}")
            print(f"kube {api.url}")
            print(f"kubeconfig {config}", flush=True)
            sim = SimGateway(provider=provider)
            credential = {"wawp": f"PRESENCE_WAWP__INSTANCE_ID={sim.instance_id} "
                          f"PRESENCE_WAWP__ACCESS_TOKEN={sim.access_token}",
                          "waha": f"PRESENCE_WAHA__SESSION={sim.instance_id} "
                          f"PRESENCE_WAHA__API_KEY={sim.access_token}",
                          "evolution": f"PRESENCE_EVOLUTION__INSTANCE={sim.instance_id} "
                          f"PRESENCE_EVOLUTION__API_KEY={sim.access_token}"}[provider]  # fmt: skip
            print(f"# the simulated gateway's credentials: {credential}", file=sys.stderr)
            witness = as_environment(witness_values(simulated, gateway.url))
            shown = " ".join(f"{k}={v}" for k, v in witness.items())
            print(f"# its witness session: {shown}", file=sys.stderr)
            if fleet:
                print(f"# pods of deployment/{WORKLOAD} in namespace {NAMESPACE}: "
                      f"{' '.join(PODS)}", file=sys.stderr)  # fmt: skip
            await stop.wait()
    return 0
