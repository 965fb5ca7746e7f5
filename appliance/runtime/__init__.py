"""Shared process runtime: logging, sd_notify, service lifecycle, dev supervisor."""
