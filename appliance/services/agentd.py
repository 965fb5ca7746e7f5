"""appliance-agentd: one conversation per call, on the bus.

Entry point of the systemd unit appliance-agentd.service and of `appliancectl up`; wires the
runtime to the AgentService component (appliance/agent/service.py).
"""

from ..agent.service import AgentService
from ..metrics.series import registry_for
from ..runtime.service import run_service


def main(argv=None) -> None:
    run_service("agentd", AgentService, argv=argv, series=registry_for)


if __name__ == "__main__":
    main()
