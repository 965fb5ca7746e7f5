"""Telephony: sipd's SIP signalling, RTP media and call handling (RFC 3261 and friends)."""
