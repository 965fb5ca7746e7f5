"""Speech recognition backends behind one interface (base.AsrBackend)."""
