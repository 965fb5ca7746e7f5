"""Speech synthesis backends behind one interface (base.TtsBackend)."""
