"""appliance-agentd: one conversation per call: turn-taking, LLM, tools, escalation.

Entry point of the systemd unit appliance-agentd.service and of `appliancectl up`. Only wires
the runtime; the service's own component plugs in through `run_service`.
"""

from ..runtime.service import run_service


def main(argv=None) -> None:
    run_service("agentd", argv=argv)


if __name__ == "__main__":
    main()
