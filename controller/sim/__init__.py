"""Simulated consumer and gateway on loopback, shared by the demo, the tests and the benchmarks."""

from controller.sim.consumer import SimConsumer
from controller.sim.gateway import GatewayCall, SimGateway
from controller.sim.server import LoopbackServer

__all__ = ["GatewayCall", "LoopbackServer", "SimConsumer", "SimGateway"]
