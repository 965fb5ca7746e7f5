"""appliance-sipd: SIP signalling and RTP; owns calls and their audio rings.

Entry point of the systemd unit appliance-sipd.service and of `appliancectl up`. Only wires
the runtime; the service's own component plugs in through `run_service`.
"""

from ..runtime.service import run_service
from ..telephony.endpoint import SipEndpoint


def main(argv=None) -> None:
    # sipd creates every call's rings, and hosts the box's /metrics (the process a call needs anyway)
    run_service("sipd", SipEndpoint, argv=argv, owns_rings=True, serves_metrics=True)


if __name__ == "__main__":
    main()
