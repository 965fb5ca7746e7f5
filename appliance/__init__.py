"""The voice-agent appliance: SIP calls answered by a local speech + LLM agent."""

__version__ = "0.1.0"
