"""Inference: the decoding commands and their Python API (``transcribe``, ``caption``), the
attention figures. Imports the layers below it, never ``training``."""
