"""Hashtags, @-mentions and descriptive words: one definition, read by Python and by SQL.

A tag character is ``_`` or any character of the Unicode major categories in
``TAG_CATEGORIES`` (letters, combining marks, digits of any script: what Instagram links
as a tag); a mention may hold single dots between runs of tag characters (as user names
do). Captions are lowercased before parsing. A descriptive word is a whitespace-separated
token (tab, LF, FF, CR, space or any Unicode separator) holding a character of
``WORD_CATEGORIES``, so lone emojis and punctuation do not count.

The Python parser below and the regular expressions both engines run (DuckDB's RE2 and
Spark's Java regex) are built from these constants; ``tests/test_pairs_schema.py`` checks
that they agree on captions in many scripts.
"""

from __future__ import annotations

import unicodedata

TAG_CATEGORIES = "LMN"
TAG_EXTRA = "_"
WORD_CATEGORIES = "LN"
SPACE_CHARS = "\t\n\f\r "  # plus every character of category Z


def _sql_class(categories: str, *, before: str = "", after: str = "", negate: bool = False) -> str:
    return "[" + ("^" if negate else "") + before + "".join(f"\\p{{{c}}}" for c in categories) + after + "]"


_SPACE_SQL = "\\t\\n\\f\\r "
# Regular expressions for the SQL engines (RE2 and Java syntax agree on these).
TAG_CHARS = _sql_class(TAG_CATEGORIES, after=TAG_EXTRA)
HASHTAG_RE = "#(" + TAG_CHARS + "+)"
MENTION_RE = "@(" + TAG_CHARS + r"+(?:\." + TAG_CHARS + "+)*)"
GIVEN_TAG_RE = TAG_CHARS + r"+(?:\." + TAG_CHARS + "+)*"  # tags inside a string such as "#a, b"
WORD_RE = _sql_class(WORD_CATEGORIES)
_NON_SPACE = _sql_class("Z", before=_SPACE_SQL, negate=True)
WORD_TOKEN_RE = f"{_NON_SPACE}*{WORD_RE}{_NON_SPACE}*"  # one match per descriptive word
WHITESPACE_RE = _sql_class("Z", before=_SPACE_SQL) + "+"


def is_tag_char(ch: str) -> bool:
    return ch in TAG_EXTRA or unicodedata.category(ch)[0] in TAG_CATEGORIES


def _is_space(ch: str) -> bool:
    return ch in SPACE_CHARS or unicodedata.category(ch)[0] == "Z"


def _scan(caption: str, sigil: str, allow_dots: bool) -> tuple[list[str], str]:
    """Extract ``sigil``-prefixed tokens; return (tokens, caption with each replaced by a space)."""
    tokens: list[str] = []
    rest: list[str] = []
    i, n = 0, len(caption)
    while i < n:
        if caption[i] == sigil and i + 1 < n and is_tag_char(caption[i + 1]):
            j = i + 1
            while j < n and (is_tag_char(caption[j]) or (
                    allow_dots and caption[j] == "." and j + 1 < n and is_tag_char(caption[j + 1]))):
                j += 1
            tokens.append(caption[i + 1:j])
            rest.append(" ")
            i = j
        else:
            rest.append(caption[i])
            i += 1
    return tokens, "".join(rest)


def parse_hashtags(caption: str | None) -> list[str]:
    """``#tag`` tokens of a caption, lowercased, in order (Unicode letters, marks, digits, _)."""
    return _scan((caption or "").lower(), "#", allow_dots=False)[0]


def parse_mentions(caption: str | None) -> list[str]:
    """``@user`` tokens (dots allowed inside, as in Instagram user names), lowercased."""
    # Lowercase first, then scan: the SQL engines do the same, so both agree on every script.
    return _scan((caption or "").lower(), "@", allow_dots=True)[0]


def descriptive_words(caption: str | None) -> int:
    """Words in a caption besides hashtags and @-mentions (see the module docstring)."""
    _, rest = _scan(caption or "", "#", allow_dots=False)
    _, rest = _scan(rest, "@", allow_dots=True)
    words, has_letter = 0, False
    for ch in rest + " ":
        if _is_space(ch):
            words += has_letter
            has_letter = False
        elif unicodedata.category(ch)[0] in WORD_CATEGORIES:
            has_letter = True
    return words


def tag_key(tags: list[str] | None) -> str:
    """Canonical form of a hashtag or mention list: order-free, case-free, counts kept."""
    return " ".join(sorted(t.strip().lstrip("#@").lower() for t in (tags or []) if t and t.strip()))
