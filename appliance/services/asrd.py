"""appliance-asrd: speech recognition and endpointing from the in rings.

Entry point of the systemd unit appliance-asrd.service and of `appliancectl up`; wires the
runtime to the Recognition component (appliance/speech/recognition.py).
"""

from ..metrics.series import registry_for
from ..runtime.service import run_service
from ..speech.recognition import Recognition


def main(argv=None) -> None:
    run_service("asrd", Recognition, argv=argv, series=registry_for)


if __name__ == "__main__":
    main()
