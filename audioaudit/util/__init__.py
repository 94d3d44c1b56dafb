"""Bottom layer: atomic writes, friendly reads, progress bars, memory watch, worker processes. Imports nothing else of audioaudit."""
