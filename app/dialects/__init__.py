"""Client dialects: canonical events to each client's bytes, one module per dialect."""
