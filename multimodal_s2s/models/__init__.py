"""Model parts: encoders (the contract in ``encoders/base.py``, the registry in
``encoders/__init__.py``), attention, the attention decoder, the generator, the auxiliary
CTC and bag-of-words heads, the losses, and ``Seq2Seq`` with ``build_model``. Never imports
the data loaders: a model is built from a config alone."""
