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
        text = where + self.message.rstrip(".") + "."
        if self.allowed is not None:
            text += " Allowed: " + _short_list(self.allowed) + "."
            if isinstance(self.value, str):
                guess = did_you_mean(self.value, self.allowed)
                if guess:
                    text += f" Did you mean {guess!r}?"
        if self.hint:
            text += " " + self.hint.rstrip(".") + "."
        return text


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
