"""Data: the data sources by name (``sources.py``), manifests and corpus importers,
batching, reading audio and image files. Never imports the model parts."""
