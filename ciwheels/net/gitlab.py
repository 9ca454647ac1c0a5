"""GitLab's API, for what only GitLab can do: the merge-request note of `ciwheels diff`.

Every call goes through net/http.py's client (one deadline for each whole call, bounded
answers, the token as a header that never follows a redirect and never appears in output)."""

from __future__ import annotations

import json
import os
import urllib.parse

from ciwheels.core import secrets as credentials
from ciwheels.core.errors import CiwheelsError
from ciwheels.net.http import REDIRECTS, HttpClient

MARKER = "<!-- ciwheels-matrix-diff -->"  # the first line of our note: how we find it again
MAX_NOTE_PAGES = 50  # pages of 100 notes read to find ours; a server that always has a next page stops here
MAX_API_RESPONSE = 16 << 20  # bytes of one GitLab API answer


def post_gitlab_note(markdown: str, env: dict[str, str] | None = None, timeout: float = 30) -> str:
    """Create or update the one merge-request note that carries the matrix diff (found by its
    marker). Needs CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID and a project access token
    in CIWHEELS_NOTE_TOKEN (job tokens cannot post notes). Returns what it did; raises
    CiwheelsError (never with the token in it) when it could not. Bounded: at most
    MAX_NOTE_PAGES pages, answers of at most MAX_API_RESPONSE bytes, each call within `timeout`
    seconds in all; the token never goes over plain http to a host that is not loopback."""
    env = dict(os.environ) if env is None else env
    missing = [k for k in ("CI_API_V4_URL", "CI_PROJECT_ID", "CI_MERGE_REQUEST_IID", "CIWHEELS_NOTE_TOKEN")
               if not env.get(k)]
    if missing:
        raise CiwheelsError(f"cannot post the merge-request note: {', '.join(missing)} not set")
    token = env["CIWHEELS_NOTE_TOKEN"]
    credentials.remember(token)
    api, _, _ = credentials.split_userinfo(env["CI_API_V4_URL"].rstrip("/"))
    client = HttpClient(headers={"PRIVATE-TOKEN": token}, retries=1, timeout=timeout,
                        allow_insecure_http=credentials.insecure_allowed(env), max_response=MAX_API_RESPONSE)
    project = urllib.parse.quote(env["CI_PROJECT_ID"], safe="")
    mr = urllib.parse.quote(env["CI_MERGE_REQUEST_IID"], safe="")
    base = f"{api}/projects/{project}/merge_requests/{mr}/notes"

    def call(method: str, url: str, body: dict | None = None):
        shown = client.scrub(url.split("?")[0])
        kw = {"data": json.dumps(body).encode(), "headers": {"Content-Type": "application/json"}} \
            if body is not None else {}
        try:
            resp, _ = client.request(method, url, f"{method} {shown}", answer_server_errors=True, **kw)
        except CiwheelsError as e:
            raise CiwheelsError(f"cannot reach GitLab: {client.scrub(str(e))}") from None
        if resp.status_code in REDIRECTS:  # the token must not follow a redirect elsewhere
            raise CiwheelsError(f"GitLab answered {resp.status_code} (a redirect) to {method} {shown}; not followed")
        if resp.status_code >= 400:
            raise CiwheelsError(f"GitLab answered {resp.status_code} to {method} {shown}")
        try:
            return json.loads(resp.content or b"null"), resp.headers
        except (ValueError, RecursionError):
            raise CiwheelsError(f"GitLab answered {method} {shown} with something that is not JSON") from None

    page, seen = "1", set()
    for _ in range(MAX_NOTE_PAGES):
        seen.add(page)
        notes, headers = call("GET", f"{base}?per_page=100&page={urllib.parse.quote(page, safe='')}&sort=asc")
        if not isinstance(notes, list):
            raise CiwheelsError(f"GitLab answered the list of notes with {type(notes).__name__}, not a list "
                                f"({client.scrub(json.dumps(notes)[:200])})")
        for note in notes:
            if isinstance(note, dict) and str(note.get("body", "")).startswith(MARKER):
                note_id = note.get("id")
                if not isinstance(note_id, int) or isinstance(note_id, bool):
                    raise CiwheelsError(f"GitLab listed our note with the id {note_id!r}, not a number")
                call("PUT", f"{base}/{note_id}", {"body": markdown})
                return f"updated merge-request note {note_id}"
        page = (headers.get("X-Next-Page") or "").strip()
        if not page:
            break
        if not page.isdigit() or page in seen:
            raise CiwheelsError(f"GitLab's X-Next-Page {page[:20]!r} is not a new page number; stopping")
    else:
        raise CiwheelsError(f"more than {MAX_NOTE_PAGES} pages of merge-request notes, the limit; not posting a "
                            "second note")
    created, _ = call("POST", base, {"body": markdown})
    return f"created merge-request note {created.get('id') if isinstance(created, dict) else ''}".rstrip()
