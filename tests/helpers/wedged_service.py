"""A real service process (the shared runtime, its own name "wedge") whose component wedges
the asyncio event loop: ``WEDGE_AFTER_S`` after start it sends STATUS=wedged and blocks the
loop for ``WEDGE_S`` seconds (then STATUS=unwedged), while a worker thread stays busy the
whole time. What systemd's watchdog must catch: a live process with live threads whose loop
is stuck.

    wedged_service.py --config FILE     (env: NOTIFY_SOCKET, WATCHDOG_USEC, WEDGE_S, WEDGE_AFTER_S)
"""

import asyncio
import os
import sys
import threading
import time

from appliance.runtime.service import run_service


def wedge_the_event_loop(seconds: float) -> None:
    time.sleep(seconds)  # what a blocking call in a coroutine does to every other task


class Wedge:
    async def start(self, runtime) -> None:
        self.runtime = runtime
        threading.Thread(target=self._work, name="worker", daemon=True).start()
        asyncio.get_running_loop().call_later(float(os.environ.get("WEDGE_AFTER_S", "0.5")), self._wedge)

    def _work(self) -> None:
        while True:
            time.sleep(0.01)

    def _wedge(self) -> None:
        self.runtime.notifier.status(f"wedged {time.monotonic():.3f}")
        wedge_the_event_loop(float(os.environ["WEDGE_S"]))
        self.runtime.notifier.status(f"unwedged {time.monotonic():.3f}")

    async def stop(self) -> None:
        pass

    def status(self) -> dict:
        return {}


if __name__ == "__main__":
    run_service("wedge", lambda config: Wedge(), argv=sys.argv[1:])
