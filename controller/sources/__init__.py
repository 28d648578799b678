"""Observe: probes that turn the consumer into plain values. A probe never raises into the loop."""
