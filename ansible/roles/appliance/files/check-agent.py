"""Check an agent file with the appliance's own loader, as agentd will load it.
Used by Ansible (role appliance) to validate an agent file before it is installed.
Exit 0 when it can be used, 2 with every problem listed."""

import sys

from appliance.agent.definition import AgentError, load_agent

try:
    agent = load_agent(sys.argv[1])
except AgentError as exc:
    print(exc.render(), file=sys.stderr)
    sys.exit(2)
for warning in agent.warnings:
    print(f"warning: {warning}")
print(f"agent {agent.name} is valid")
