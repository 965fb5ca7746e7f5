"""appliance-asrd: speech recognition and endpointing from the in rings.

Entry point of the systemd unit appliance-asrd.service and of `appliancectl up`; wires the
runtime to the Recognition component (appliance/speech/recognition.py).
"""

from ..runtime.service import run_service
from ..speech.recognition import Recognition


def main(argv=None) -> None:
    run_service("asrd", Recognition, argv=argv)


if __name__ == "__main__":
    main()
