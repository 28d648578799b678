"""The imperative shell: the tick loop, the actuator, the admin server, logs and metrics."""
