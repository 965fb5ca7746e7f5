"""appliance-sipd: SIP signalling and RTP; owns calls and their audio rings.

Entry point of the systemd unit appliance-sipd.service and of `appliancectl up`. Only wires
the runtime; the service's own component plugs in through `run_service`.
"""

from ..metrics.exporter import Exporter
from ..metrics.series import registry_for
from ..runtime.service import run_service
from ..telephony.endpoint import SipEndpoint


def main(argv=None) -> None:
    # sipd creates every call's rings, and hosts the box's /metrics (the process a call needs anyway)
    run_service("sipd", SipEndpoint, argv=argv, owns_rings=True, series=registry_for, exporter=Exporter)


if __name__ == "__main__":
    main()
