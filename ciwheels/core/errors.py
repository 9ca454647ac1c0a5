"""User-facing errors: one paragraph naming the file, line and column, the bad value, what is
allowed and the closest allowed value. Raised anywhere; printed by the CLI with exit code 2."""

from __future__ import annotations

from collections.abc import Iterable


class CiwheelsError(Exception):
    """An error the user can fix. The CLI prints str(error) and exits with `exit_code`."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        value: object = None,
        allowed: Iterable[str] | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line  # 1-based
        self.column = column  # 1-based
        self.value = value
        self.allowed = list(allowed) if allowed is not None else None
        self.hint = hint
        super().__init__(self.format())

    def format(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line:
                where += f":{self.line}"
                if self.column:
                    where += f":{self.column}"
            where += ": "
        text = where + _cap_long_words(self.message).rstrip(".") + "."
        if self.allowed is not None:
            text += " Allowed: " + _short_list(self.allowed) + "."
            if isinstance(self.value, str) and len(self.value) <= MAX_SHOWN:
                guess = did_you_mean(self.value, self.allowed)
                if guess:
                    text += f" Did you mean {guess!r}?"
        if self.hint:
            text += " " + _cap_long_words(self.hint).rstrip(".") + "."
        text = " ".join(text.split()) if "\n" in text or "\r" in text else text
        return shorten(text, 2 * MAX_MESSAGE)


MAX_SHOWN = 200  # characters of one value an error repeats; longer ones are cut with an ellipsis
MAX_MESSAGE = 2000  # characters of one error in all


def shorten(value: object, limit: int = MAX_SHOWN) -> str:
    """`value` as text of at most about `limit` characters: the start, an ellipsis, the length."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def _cap_long_words(text: str) -> str:
    """Cut every run of more than MAX_SHOWN characters without a space (a value the message
    repeats, e.g. a 2 MB string), then the whole message at MAX_MESSAGE: an error stays one
    readable paragraph whatever the input was."""
    import re

    text = re.sub(r"\S{%d,}" % (MAX_SHOWN + 1), lambda m: shorten(m.group(0)), text)
    return shorten(text, MAX_MESSAGE)


def _short_list(items: list[str], limit: int = 40) -> str:
    if not items:
        return "(nothing)"
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", ... ({len(items) - limit} more)"
    return shown


def did_you_mean(value: str, allowed: Iterable[str]) -> str | None:
    import difflib

    allowed = list(allowed)
    lowered = {a.lower(): a for a in allowed}
    if value.lower() in lowered:
        return lowered[value.lower()]
    matches = difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
    if not matches:
        matches = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.6)
        matches = [lowered[m] for m in matches]
    return matches[0] if matches else None


class PublishFailed(CiwheelsError):
    """Some wheels were not published: the run can be repeated (exit code 1, not 2)."""

    exit_code = 1
