"""`appliancectl talk`: a local line (sound card or WAV files) that rings sipd like a phone."""
