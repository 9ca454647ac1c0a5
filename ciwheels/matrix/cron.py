"""A cron schedule as GitHub Actions and GitLab read it: five fields (minute, hour, day of
month, month, day of week), each `*`, a number or name in range, a range `a-b`, a step `/n`,
or a comma list of those. `problem` says what is wrong with a schedule, or None."""

from __future__ import annotations

import re

_FIELDS = (  # name, low, high, names
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)


def _number(text: str, low: int, high: int, names: tuple[str, ...]) -> int | None:
    if text.lower() in names:
        return names.index(text.lower()) + low
    if not re.fullmatch(r"\d{1,2}", text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def problem(schedule: str) -> str | None:
    fields = schedule.split()
    if len(fields) != 5:
        return f"a cron schedule has 5 fields (minute hour day-of-month month day-of-week), not {len(fields)}"
    for text, (name, low, high, names) in zip(fields, _FIELDS):
        for part in text.split(","):
            base, _, step = part.partition("/")
            if step and not (re.fullmatch(r"\d{1,2}", step) and 0 < int(step) <= high):
                return f"the {name} field {text!r} has a bad step {step!r}"
            if base == "*":
                continue
            lo_text, dash, hi_text = base.partition("-")
            lo = _number(lo_text, low, high, names)
            hi = _number(hi_text, low, high, names) if dash else lo
            if lo is None or hi is None or hi < lo:
                allowed = f"{low}-{high}" + (f" or {names[0].upper()}-{names[-1].upper()}" if names else "")
                return f"the {name} field {text!r} is not a cron field (numbers {allowed}, '*', ranges, steps, lists)"
    return None
