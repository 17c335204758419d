"""Search: greedy and batched beam search over any ``Seq2Seq`` (``beam.py``), decoding a
batch to text with the auxiliary scorers and test-time views (``decode.py``), and n-best
re-ranking (``rerank.py``)."""
