"""appliance-ttsd: speech synthesis into the out rings, cancellable.

Entry point of the systemd unit appliance-ttsd.service and of `appliancectl up`. Only wires
the runtime; the service's own component plugs in through `run_service`.
"""

from ..runtime.service import run_service


def main(argv=None) -> None:
    run_service("ttsd", argv=argv)


if __name__ == "__main__":
    main()
