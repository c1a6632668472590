"""Free text made safe for each output: the terminal, Markdown pages and CSV files.

Any field of a record, a dataset's modality or a file name may hold control characters (an ESC sequence clears
the screen or hides an OSC-8 link), HTML (a Markdown page rendered by a forge runs ``<img onerror>``) or a
spreadsheet formula (``=HYPERLINK(...)``). Each renderer passes the text it formats through one of these.
"""

from __future__ import annotations

import html
import re
from typing import Any

# C0 and C1 controls but newline and tab (multi-line cells keep their lines), DEL, the bidirectional overrides
# and isolates (text that reads in another order than it runs), and lone surrogates (the undecodable bytes of a
# file name, which ``print`` refuses).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# A spreadsheet reads a cell beginning with one of these as a formula (OWASP's list).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 name, kept by surrogateescape: show the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character (newline and tab excepted), bidi control and lone surrogate shown
    as a visible ``\\xNN`` / ``\\uNNNN`` escape: nothing in it acts on the terminal."""
    return _UNSAFE.sub(_escape, text)


def markdown_text(text: str) -> str:
    """``text`` for a Markdown page: :func:`printable`, with ``<``, ``>`` and ``&`` as HTML entities, so that a
    page shows ``<script>`` as text instead of carrying it as HTML."""
    return html.escape(printable(text), quote=False)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_value(value: Any) -> Any:
    """A CSV field: text :func:`printable`, and prefixed with ``'`` when it begins like a formula (``=``, ``+``,
    ``-``, ``@``, tab, CR) and is not a number; other values as they are."""
    if not isinstance(value, str):
        return value
    text = printable(value)
    return "'" + text if text.startswith(FORMULA_START) and not _is_number(text) else text


DISPLAY_LIMIT = 4000  # characters of one text in the terminal (prose paragraphs fit); the pages and CSVs keep it whole


def shortened(text: str, limit: int = DISPLAY_LIMIT) -> str:
    """``text`` cut to ``limit`` characters for the terminal, saying how many were left out. Formatting time must
    not grow with a field's length: tabulate's wrapping is quadratic (a 10 MB error in a record took the table
    more than 10 minutes after the pages were written in seconds)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit:,} more characters: the whole text is in the record and the pages]"
