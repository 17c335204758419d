"""Label text of the phone-menu corpus: number, date, time and money normalisation, sentences.

Every label is lowercase ``a``-``z``, apostrophe and single spaces. Letters are written as
single letters (``"k x b"``), ``"a m"`` / ``"p m"`` as two letters, and ``"oh"`` is the digit
zero as people say it in phone numbers.
"""

import random
import re
from collections.abc import Callable

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEEN_WORDS = (
    "ten", "eleven", "twelve", "thirteen", "fourteen",
    "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
TENS_WORDS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
SCALE_WORDS = ("thousand", "million", "billion")
ORDINAL_WORDS = (
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
    "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
    "seventeenth", "eighteenth", "nineteenth", "twentieth", "thirtieth", "fortieth",
    "fiftieth", "sixtieth", "seventieth", "eightieth", "ninetieth",
    "hundredth", "thousandth", "millionth", "billionth",
)  # fmt: skip
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
RELATIVE_DAYS = ("today", "tomorrow", "yesterday")
LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
NATO_WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
)  # fmt: skip

REQUIRED_WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        (*DIGIT_WORDS, "oh", *TEEN_WORDS, *TENS_WORDS, "hundred", *SCALE_WORDS)
        + ORDINAL_WORDS
        + (*WEEKDAYS, *MONTHS, *RELATIVE_DAYS)
        + ("o'clock", "at", "minus", "dollars", "star", "pound")
        + LETTERS
        + (*NATO_WORDS, "niner")
    )
)

_CARRIERS = ("{} please", "my answer is {}", "that was {}", "{} is correct")
_COMMAND_WORDS = (
    "press enter your pin followed by the key dial extension for option repeat main menu "
    "operator yes no cancel go back account number speak to an agent check my balance pay "
    "transfer is it was on code reference please answer that correct and dollar cents flight "
    "caller you are call me"
).split()

_IRREGULAR_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth",
    "eight": "eighth", "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
_LABEL_PATTERN = re.compile(r"[a-z']+( [a-z']+)*")
_MAX_NUMBER = 10**12 - 1


def number_to_words(number: int) -> str:
    """Spell an integer in American English without "and": 1_000_000_001 -> "one billion one".

    Negative numbers start with "minus". Raises ValueError beyond +-999,999,999,999.
    """
    if abs(number) > _MAX_NUMBER:
        raise ValueError(f"number {number} is out of range (at most {_MAX_NUMBER} in size)")
    if number < 0:
        return "minus " + number_to_words(-number)
    if number == 0:
        return "zero"
    words = []
    for scale_index in range(len(SCALE_WORDS), -1, -1):
        group = number // 1000**scale_index % 1000
        if group:
            words.append(_below_thousand(group))
            if scale_index:
                words.append(SCALE_WORDS[scale_index - 1])
    return " ".join(words)


def _below_thousand(number: int) -> str:
    hundreds, rest = divmod(number, 100)
    words = [DIGIT_WORDS[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        tens, units = divmod(rest, 10)
        words.append(TENS_WORDS[tens - 2])
        if units:
            words.append(DIGIT_WORDS[units])
    elif rest >= 10:
        words.append(TEEN_WORDS[rest - 10])
    elif rest:
        words.append(DIGIT_WORDS[rest])
    return " ".join(words)


def ordinal(number: int) -> str:
    """Spell a positive ordinal: 21 -> "twenty first", 1_000_000 -> "one millionth"."""
    if number < 1:
        raise ValueError(f"ordinal of {number}: must be at least 1")
    *head, last = number_to_words(number).split()
    if last in _IRREGULAR_ORDINALS:
        last = _IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def digits_to_words(digits: str, zero: str = "zero") -> str:
    """Read a digit string one digit at a time: "207" -> "two zero seven" (or "two oh seven")."""
    if not digits.isdigit():
        raise ValueError(f"digit string {digits!r} contains a non-digit")
    return " ".join(zero if d == "0" else DIGIT_WORDS[int(d)] for d in digits)


def time_to_words(hour: int, minute: int, meridiem: str | None = None) -> str:
    """Spell a 12-hour clock time: (10, 30, "pm") -> "ten thirty p m", (7, 0) -> "seven o'clock".

    ``meridiem`` is "am", "pm" or None. Minutes 1-9 are read "oh five".
    """
    if not 1 <= hour <= 12 or not 0 <= minute <= 59 or meridiem not in (None, "am", "pm"):
        raise ValueError(f"time {hour}:{minute:02d} {meridiem} is not a 12-hour clock time")
    words = [number_to_words(hour)]
    if minute == 0 and meridiem is None:
        words.append("o'clock")
    elif 0 < minute < 10:
        words += ["oh", DIGIT_WORDS[minute]]
    elif minute:
        words.append(number_to_words(minute))
    if meridiem:
        words += [meridiem[0], "m"]
    return " ".join(words)


def date_to_words(day: int, month: int, weekday: int | None = None, style: str = "of") -> str:
    """Spell a date: (21, 3, 0) -> "monday the twenty first of march".

    ``month`` is 1-12, ``weekday`` 0 (monday) - 6 (sunday) or None; style "of" gives
    "the twenty first of march", style "month" gives "march twenty first".
    """
    if not 1 <= day <= 31 or not 1 <= month <= 12 or style not in ("of", "month"):
        raise ValueError(f"date day={day} month={month} style={style!r} is invalid")
    if style == "of":
        words = ["the", ordinal(day), "of", MONTHS[month - 1]]
    else:
        words = [MONTHS[month - 1], ordinal(day)]
    if weekday is not None:
        words.insert(0, WEEKDAYS[weekday])
    return " ".join(words)


def money_to_words(dollars: int, cents: int = 0) -> str:
    """Spell an amount: (42, 0) -> "forty two dollars", (1, 5) -> "one dollar and five cents"."""
    if dollars < 0 or not 0 <= cents <= 99:
        raise ValueError(f"amount {dollars} dollars {cents} cents is invalid")
    words = f"{number_to_words(dollars)} {'dollar' if dollars == 1 else 'dollars'}"
    if cents:
        words += f" and {number_to_words(cents)} {'cent' if cents == 1 else 'cents'}"
    return words


def is_valid_label(text: str) -> bool:
    """True when ``text`` is lowercase a-z / apostrophe words separated by single spaces."""
    return _LABEL_PATTERN.fullmatch(text) is not None


def generate_sentences(rng: random.Random, count: int) -> list[str]:
    """Draw ``count`` labels: isolated words, words in a carrier phrase, and phone-menu sequences.

    The first ``2 * len(REQUIRED_WORDS)`` labels guarantee coverage: every required word once
    alone and once inside a longer utterance (in a shuffled order); the rest are a mix of about
    one third isolated words and two thirds sequences from the category generators.
    """
    words = list(REQUIRED_WORDS)
    rng.shuffle(words)
    coverage = words + [rng.choice(_CARRIERS).format(word) for word in words]
    rng.shuffle(coverage)
    sentences = coverage[:count]
    while len(sentences) < count:
        if rng.random() < 1 / 3:
            sentences.append(rng.choice(REQUIRED_WORDS))
        else:
            generator = rng.choices(_GENERATORS, weights=_GENERATOR_WEIGHTS)[0]
            sentences.append(generator(rng))
    return sentences


def _digit_string(rng: random.Random, length: int) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(length))
    return digits_to_words(digits, zero=rng.choice(("zero", "oh")))


def _phone_number(rng: random.Random) -> str:
    number = _digit_string(rng, rng.choice((7, 10, 11)))
    return rng.choice(("{}", "call me at {}", "my number is {}", "dial {}")).format(number)


def _pin(rng: random.Random) -> str:
    pin = _digit_string(rng, rng.choice((4, 4, 5, 6)))
    template = rng.choice(("{}", "{} pound", "my pin is {}", "star {} pound", "{} star"))
    return template.format(pin)


def _code(rng: random.Random) -> str:
    nato = rng.random() < 0.5
    symbols = []
    for _ in range(rng.randint(2, 7)):
        if rng.random() < 0.6:
            letter = rng.choice(LETTERS)
            symbols.append(NATO_WORDS[LETTERS.index(letter)] if nato else letter)
        else:
            digit = rng.randrange(10)
            symbols.append("niner" if nato and digit == 9 else DIGIT_WORDS[digit])
    code = " ".join(symbols)
    return rng.choice(("{}", "{}", "my reference is {}", "code {}", "flight {}")).format(code)


def _letters(rng: random.Random) -> str:
    return " ".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 6)))


def _nato_words(rng: random.Random) -> str:
    words = [rng.choice(NATO_WORDS + ("niner",)) for _ in range(rng.randint(2, 5))]
    return " ".join(words)


def _log_uniform_number(rng: random.Random) -> int:
    magnitude = rng.choice((1, 2, 3, 4, 6, 7, 9, 10, 12))
    if rng.random() < 0.25:
        return rng.randint(1, 9) * 10 ** rng.randrange(magnitude)
    return rng.randint(10 ** (magnitude - 1), 10**magnitude - 1)


def _cardinal(rng: random.Random) -> str:
    number = _log_uniform_number(rng)
    words = number_to_words(-number if rng.random() < 0.15 else number)
    return rng.choice(("{}", "{}", "account number {}", "extension {}", "it is {}")).format(words)


def _ordinal(rng: random.Random) -> str:
    words = ordinal(_log_uniform_number(rng) if rng.random() < 0.5 else rng.randint(1, 100))
    return rng.choice(("{}", "the {}", "you are the {} caller", "the {} option")).format(words)


def _date(rng: random.Random) -> str:
    weekday = rng.randrange(7) if rng.random() < 0.5 else None
    style = rng.choice(("of", "month"))
    date = date_to_words(rng.randint(1, 31), rng.randint(1, 12), weekday, style)
    return rng.choice(("{}", "{}", "on {}", "{} at {clock}")).format(date, clock=_clock(rng))


def _clock(rng: random.Random) -> str:
    minute = rng.choice((0, 0, 15, 30, 45, rng.randrange(60)))
    return time_to_words(rng.randint(1, 12), minute, rng.choice((None, "am", "pm")))


def _time(rng: random.Random) -> str:
    day = rng.choice(RELATIVE_DAYS + WEEKDAYS)
    template = rng.choice(("{clock}", "at {clock}", "{day} at {clock}", "{day}", "call me {day}"))
    return template.format(clock=_clock(rng), day=day)


def _money(rng: random.Random) -> str:
    dollars = _log_uniform_number(rng) if rng.random() < 0.3 else rng.randint(0, 999)
    amount = money_to_words(dollars, rng.randrange(100) if rng.random() < 0.3 else 0)
    if rng.random() < 0.1:
        amount = "minus " + amount
    return rng.choice(("{}", "pay {}", "transfer {}", "my balance is {}")).format(amount)


def _command(rng: random.Random) -> str:
    key = rng.choice((*DIGIT_WORDS, "star", "pound"))
    return rng.choice(
        (
            f"press {key}",
            f"press {key} for option {rng.choice(DIGIT_WORDS)}",
            "enter your pin followed by the pound key",
            "press the star key",
            "press the pound key",
            "repeat",
            "main menu",
            "operator",
            "speak to an agent",
            "check my balance",
            "go back",
            "cancel",
            "yes",
            "no",
            f"option {rng.choice(DIGIT_WORDS)}",
        )
    )


_GENERATORS: tuple[Callable[[random.Random], str], ...] = (
    _phone_number, _pin, _code, _letters, _nato_words, _cardinal,
    _ordinal, _date, _time, _money, _command,
)  # fmt: skip
_GENERATOR_WEIGHTS = (3, 2, 3, 3, 2, 4, 2, 3, 3, 3, 2)

VOCABULARY: frozenset[str] = frozenset(
    REQUIRED_WORDS
    + tuple(" ".join(_CARRIERS).replace("{}", " ").split())
    + tuple(_COMMAND_WORDS)
    + ("of", "the", "a", "m", "dollar", "cent")
)
