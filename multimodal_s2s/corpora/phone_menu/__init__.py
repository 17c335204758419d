"""Built-in "phone-menu speech" corpus: digits, numbers, dates, times, money, spelled letters,
NATO words and menu commands, synthesised with Debian TTS voices (see ``prepare``)."""
