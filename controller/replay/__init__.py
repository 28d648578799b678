"""The replay command: history sources (`sources`), the report and plot (`report`), the
command and its arguments (`command`, `arguments`); the decision over recorded samples is the
pure `core.replay`. Nothing is imported here: `run` starts without any of it."""
