"""Built-in scene captioning corpus: Tux Paint stamps composited onto photos and textures.

Captions follow a tiny, exact grammar (``data/scene_captions.py``), so scoring can tell object
recognition apart from spatial relations. Build it with
``python -m multimodal_s2s.corpora.scenes.prepare OUT_DIR``.
"""
