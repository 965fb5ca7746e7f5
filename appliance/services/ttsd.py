"""appliance-ttsd: speech synthesis into the out rings, cancellable.

Entry point of the systemd unit appliance-ttsd.service and of `appliancectl up`; wires the
runtime to the Synthesis component (appliance/speech/synthesis.py).
"""

from ..metrics.series import registry_for
from ..runtime.service import run_service
from ..speech.synthesis import Synthesis


def main(argv=None) -> None:
    run_service("ttsd", Synthesis, argv=argv, series=registry_for)


if __name__ == "__main__":
    main()
