"""Audio generators: EDMSound and adapters. Never imports the audit side."""
