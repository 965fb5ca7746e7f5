"""`appliancectl`: the operator's command line."""

# Exit codes of every command (README "Operating it"): one set, defined once.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP (a service manager, a closing terminal) end a command the way Ctrl-C
    does: as an exception in the main thread, so every ``finally`` that stops the services a
    command started runs. Their default action would kill the command and orphan them."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def leave(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, leave)
