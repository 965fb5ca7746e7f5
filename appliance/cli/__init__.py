"""`appliancectl`: the operator's command line."""
