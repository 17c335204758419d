"""Pronunciation-friendly respelling of labels for the text-to-speech engines.

Engines read a single letter inside a sentence as a word ("a m" becomes the article "a"
followed by "em"), spell unknown words letter by letter (flite reads "thousandth" as
t-h-o-u-...), and stress NATO words oddly. The label keeps the canonical text; the engine is
fed this respelling. The table was checked against the phone strings of ``espeak-ng -x`` and
``flite -ps`` (see ``tests/test_phone_menu_corpus.py``).
"""

_LETTER_NAMES = {
    "a": "eigh", "b": "bee", "c": "see", "d": "dee", "e": "ee", "f": "eff", "g": "jee",
    "h": "aitch", "i": "eye", "j": "jay", "k": "kay", "l": "el", "m": "em", "n": "en",
    "o": "oh", "p": "pee", "q": "cue", "r": "are", "s": "ess", "t": "tee", "u": "you",
    "v": "vee", "w": "double you", "x": "ex", "y": "why", "z": "zee",
}  # fmt: skip
_BRITISH_LETTER_NAMES = {**_LETTER_NAMES, "z": "zed"}
_WORD_RESPELLINGS = {
    "xray": "ex ray",
    "quebec": "kebeck",
    "kilo": "key low",
    "lima": "leema",
}
_ENGINE_RESPELLINGS = {"flite": {"thousandth": "thousanth"}}


def respell(label: str, accent: str = "us", engine: str = "") -> str:
    """Return the text to feed TTS ``engine`` for ``label``; ``accent`` "gb" says "zed" for z."""
    words = {
        **_WORD_RESPELLINGS,
        **(_BRITISH_LETTER_NAMES if accent == "gb" else _LETTER_NAMES),
        **_ENGINE_RESPELLINGS.get(engine, {}),
    }
    return " ".join(words.get(word, word) for word in label.split())
