"""The copy-detection benchmark: :mod:`.dataset` builds a DISC-style set from a corpus, :mod:`.evaluate` scores an encoder on it, :mod:`.metrics` holds the pure metrics (µAP, recall at precision)."""
