"""Prometheus metrics: each service's own series (series.py) and the box's one endpoint,
hosted by sipd (exporter.py)."""
