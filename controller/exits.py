"""Exit codes of every command (README, "Commands"): 0 ok, 1 failed, 2 a usage or configuration
error."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
