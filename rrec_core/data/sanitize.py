"""Item-text sanitizer: undo the obfuscations a text-tampering attacker hides in titles and genres.

An item's text reaches the language model byte for byte, so text that looks unchanged to a person can
move its embedding: look-alike letters from another script ("Tоy Story" with a Cyrillic о),
invisible characters (zero-width spaces, soft hyphens, bidi controls, tag characters), compatibility
forms (fullwidth or mathematical letters) and odd whitespace. `sanitize_text` maps each back to the
plain text a reader sees, in a fixed order:

1. "nfkc": Unicode NFKC normalization (compatibility forms, ligatures, fullwidth, math letters), except
   characters of category No (vulgar fractions, superscript digits): NFKC turns "8½" into "81⁄2",
   which changes what a title says rather than how it is encoded.
2. "invisible": format (Cf) and control (Cc) characters and variation selectors removed; tabs and line
   breaks become spaces.
3. "homoglyph": Cyrillic and Greek letters that look like Latin ones folded to the Latin letter, only
   where they are an obfuscation: inside a word that also has Latin letters, or as a whole word of
   such letters in a text whose other letters are mostly Latin. A Cyrillic or Greek title ("Брат 2",
   "Ελληνικά") is left alone.
4. "whitespace": runs of Unicode whitespace collapsed to one space, ends stripped.

The look-alike table is written here: no maintained confusables package is installed in the project's
environment, and Unicode's confusables.txt maps far more than the letters that pass for Latin in a title.
Idempotent: sanitizing sanitized text changes nothing.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

KINDS = ("nfkc", "invisible", "homoglyph", "whitespace")

# letters of other scripts that render like a Latin letter in common fonts -> that letter
LATIN_LOOKALIKES: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ӏ": "l", "ԛ": "q", "ԝ": "w", "ү": "y",
    "һ": "h",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
    "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S", "Ү": "Y", "Һ": "H", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I",
    # Greek
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ο": "o", "ν": "v", "ρ": "p", "ι": "i", "κ": "k", "α": "a",
    "τ": "t", "υ": "u", "χ": "x",
}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)  # letters and digits (combining marks ride on NFKC-composed letters)
_SPACE = re.compile(r"\s+", re.UNICODE)
_KEEP_CONTROLS = {"\t": " ", "\n": " ", "\r": " ", "\x0b": " ", "\x0c": " "}


def _script(ch: str) -> str:
    """'latin', 'lookalike' (a non-Latin letter of the table), 'other' letter, or '' for a non-letter."""
    if not ch.isalpha():
        return ""
    if ch in LATIN_LOOKALIKES:
        return "lookalike"
    return "latin" if unicodedata.name(ch, "").startswith("LATIN") else "other"


def _nfkc(text: str) -> str:
    out: list[str] = []
    run: list[str] = []
    for ch in text:
        if unicodedata.category(ch) == "No":
            out.append(unicodedata.normalize("NFKC", "".join(run)))
            out.append(ch)
            run = []
        else:
            run.append(ch)
    out.append(unicodedata.normalize("NFKC", "".join(run)))
    return "".join(out)


def _drop_invisible(text: str) -> str:
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in _KEEP_CONTROLS:
            out.append(_KEEP_CONTROLS[ch])
        elif cat in ("Cf", "Cc") or 0xFE00 <= ord(ch) <= 0xFE0F or 0xE0100 <= ord(ch) <= 0xE01EF:
            continue
        else:
            out.append(ch)
    return "".join(out)


def _fold_lookalikes(text: str) -> str:
    words = list(_WORD.finditer(text))
    letters = [_script(c) for c in text]
    n_latin, n_other = letters.count("latin"), letters.count("other") + letters.count("lookalike")
    out = list(text)
    for m in words:
        kinds = {_script(c) for c in m.group()} - {""}
        if "lookalike" not in kinds or "other" in kinds:
            continue  # nothing to fold, or a word of a real non-Latin script
        if "latin" not in kinds:
            # a whole word of look-alikes: an obfuscation only where the rest of the text is Latin
            rest_latin = n_latin
            rest_other = n_other - len([c for c in m.group() if c.isalpha()])
            if rest_latin <= rest_other:
                continue
        for i in range(m.start(), m.end()):
            out[i] = LATIN_LOOKALIKES.get(out[i], out[i])
    return "".join(out)


def _collapse_space(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


_PASSES = (("nfkc", _nfkc), ("invisible", _drop_invisible), ("homoglyph", _fold_lookalikes),
           ("whitespace", _collapse_space))


def sanitize_text(text: str) -> tuple[str, tuple[str, ...]]:
    """(clean text, the kinds of change made, in KINDS order; empty when the text was clean)."""
    kinds = []
    for kind, fn in _PASSES:
        new = fn(text)
        if new != text:
            kinds.append(kind)
            text = new
    return text, tuple(kinds)


@dataclass(frozen=True)
class TextChange:
    """One sanitized cell: its row label (the loaders label rows by their line in the source file),
    column, what was changed, before and after."""

    row: object
    column: str
    kinds: tuple[str, ...]
    before: str
    after: str


def sanitize_frame(df: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.DataFrame, list[TextChange]]:
    """A copy of `df` with the string cells of `columns` sanitized (other values and absent columns left
    alone), and one TextChange per changed cell."""
    out = df.copy()
    changes: list[TextChange] = []
    for col in columns:
        if col not in out.columns:
            continue
        values = out[col].tolist()
        changed = False
        for pos, value in enumerate(values):
            if not isinstance(value, str):
                continue
            clean, kinds = sanitize_text(value)
            if kinds:
                values[pos] = clean
                changed = True
                changes.append(TextChange(out.index[pos], col, kinds, value, clean))
        if changed:
            out[col] = pd.Series(values, index=out.index, dtype=out[col].dtype)
    return out, changes


def describe(change: TextChange, source: str = "") -> str:
    """One line naming where a cell was changed, how, and from what to what."""
    def short(s: str) -> str:
        r = repr(s)
        return r if len(r) <= 80 else r[:77] + "..."

    where = f"{source}: " if source else ""
    return (f"{where}row {change.row}, column {change.column}: {'+'.join(change.kinds)} "
            f"{short(change.before)} -> {short(change.after)}")
