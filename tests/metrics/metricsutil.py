"""Scraping the appliance's /metrics the way Prometheus does, parsed with prometheus_client."""

from __future__ import annotations

import socket
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from appliance.bench.sipdrive import free_port


def metrics_config(sandbox) -> int:
    """Give the sandbox's sipd a /metrics port of its own; returns it."""
    port = free_port(socket.SOCK_STREAM)
    cfg = sandbox["config"]
    cfg.write_text(cfg.read_text() + f'\n[metrics]\nbind = "127.0.0.1"\nport = {port}\n')
    return port


class Scrape:
    def __init__(self, text: str):
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples = [s for f in self.families for s in f.samples]

    def declared(self) -> set[str]:
        """Names in `# TYPE` lines (counters as name_total), whether or not they have samples."""
        return {line.split()[2] for line in self.text.splitlines() if line.startswith("# TYPE ")}

    def find(self, name: str, **labels) -> list:
        return [s for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels) -> float | None:
        """The one sample matching; None when there is none (two is a test error)."""
        found = self.find(name, **labels)
        assert len(found) <= 1, found
        return found[0].value if found else None


def scrape(port: int, timeout: float = 5.0) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        return Scrape(resp.read().decode())


def wait_for(port: int, check, timeout: float = 30.0, what: str = "") -> Scrape:
    """Scrape until ``check(scrape)`` is true; the last scrape in the failure message."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = scrape(port)
            if check(last):
                return last
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"/metrics never showed {what or check} within {timeout} s:\n"
                         + (last.text if last else "(no answer)"))
