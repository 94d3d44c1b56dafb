"""The copy detector: copy transformations (augment), fine-tuning, the DISC-style benchmark and the precision calibration of a detector."""
