"""`appliancectl`: the operator's command line."""

# Exit codes of every command (README "Operating it"): one set, defined once.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3
