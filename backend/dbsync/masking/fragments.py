"""Checking the rules file's `sql:` and `where:` fragments before they go anywhere near prod.

A fragment is pasted into `COPY (SELECT … FROM t WHERE …) TO STDOUT`, which runs on the source.
A READ ONLY transaction is no defence on its own: a fragment that closes the COPY and starts
statements of its own (`true) TO STDOUT; COMMIT; CREATE TABLE …`) runs them, and after the
COMMIT nothing is read-only any more. So before anything is read each fragment is tokenized as
PostgreSQL's lexer would and refused unless it is one expression's worth of tokens: no statement
separator, no comment, parentheses balanced and never closed past the fragment's own, every
string, quoted identifier and dollar-quoted string closed. The server then parses it in its
place (see dbsync.masking.binding), which catches whatever is not an expression, and judges it
IMMUTABLE (dbsync.masking.immutable), which refuses whatever could read a setting, the masking
key included, or give another value on another night.
"""

from __future__ import annotations

import re

# $tag$ … $tag$: a tag is an identifier without `$`, or empty.
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")


class FragmentError(ValueError):
    """Why a fragment is not one expression."""


def _skip_quoted(text: str, i: int, quote: str, *, backslash: bool) -> int:
    """Index just past the closing quote of a quoted token opening at text[i]."""
    j = i + 1
    while j < len(text):
        c = text[j]
        if backslash and c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < len(text) and text[j + 1] == quote:  # doubled quote: part of the token
                j += 2
                continue
            return j + 1
        j += 1
    raise FragmentError(f"an unterminated {'string' if quote == chr(39) else 'quoted identifier'}")


def check_expression(text: str) -> None:
    """Raise FragmentError unless `text` is at most one parenthesis-balanced expression."""
    if not isinstance(text, str) or not text.strip():
        raise FragmentError("it is empty")
    if "\x00" in text:
        raise FragmentError("it contains a NUL character")
    depth, i = 0, 0
    while i < len(text):
        c = text[i]
        if c == "'":
            # E'…' strings take backslash escapes; standard strings do not.
            escaped = i > 0 and text[i - 1] in "eE" and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_"))
            i = _skip_quoted(text, i, "'", backslash=escaped)
        elif c == '"':
            i = _skip_quoted(text, i, '"', backslash=False)
        elif c == "$" and (m := _DOLLAR_TAG.match(text, i)) and not (i > 0 and (text[i - 1].isalnum()
                                                                            or text[i - 1] == "_")):
            end = text.find(m.group(0), m.end())
            if end < 0:
                raise FragmentError("an unterminated dollar-quoted string")
            i = end + len(m.group(0))
        elif text.startswith("--", i) or text.startswith("/*", i):
            raise FragmentError("a comment (it would hide the rest of the statement)")
        elif c == ";":
            raise FragmentError("a statement separator ';'")
        elif c == "(":
            depth += 1
            i += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                raise FragmentError("a ')' that closes more than it opened")
            i += 1
        elif c == "\\":
            raise FragmentError("a backslash outside a string (psql meta-commands have no place here)")
        else:
            i += 1
    if depth:
        raise FragmentError(f"{depth} unclosed '('")
