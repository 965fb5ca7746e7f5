"""SIP: messages, transports, transactions, dialogs, digest auth."""
