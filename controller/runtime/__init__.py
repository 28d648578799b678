"""The shell where the parts meet: the loop, the actuator, the policy inputs, the reporter, the
shutdown write, the status document, the admin server and the clock (docs/architecture.md)."""
