"""Speech: voice activity, recognition (asrd) and synthesis (ttsd), with pluggable backends."""
