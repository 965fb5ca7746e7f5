"""agentd: one conversation per call (turn-taking, understanding, tools, transfers, call records)."""
