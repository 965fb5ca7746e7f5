"""Process entry points: thin mains that wire library code (one per systemd unit)."""
