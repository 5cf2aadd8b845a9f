"""A loopback fake of today's Jira Cloud REST API, enough for airbyte-source-jira==4.0.0's `issues`/`projects`
streams and the override's check.

    with FakeJira(seed=1, issue_count=120) as jira:
        config = {"domain": "example.atlassian.net", "base_url": jira.base_url,
                  "email": jira.email, "api_token": jira.token}
        ...
        jira.touch_issue("10003", updated="2024-06-01T10:00:00.000+0000")
        jira.fail_next(2, 500); jira.drop_next(1); jira.set_token("rotated")
        [r.path for r in jira.requests]

Served (plain HTTP on 127.0.0.1, random port, HTTP/1.1 keep-alive, Basic auth on every endpoint):

* ``GET|POST /rest/api/3/search/jql`` - params/body ``jql``, ``maxResults`` (default 50; capped at 100, or 5000
  when only ``id`` is asked for), ``fields`` (``*all``/``*navigable``/comma list/JSON list; default: only ``id``),
  ``expand`` (``renderedFields``, ``transitions``, ``changelog``, ``names``), ``nextPageToken``. Answers
  ``{"issues": [...], "nextPageToken": "<opaque>", "isLast": false}``; the last page has ``"isLast": true`` and
  no token; never ``total``/``startAt``. A token that is not one of ours, or belongs to another query, answers
  400 (the message text is an approximation of Jira's).
* ``GET|POST /rest/api/3/search`` - 410 Gone with Atlassian's migration message (CHANGE-2046).
* ``GET /rest/api/3/project/search`` - ``startAt``/``maxResults``/``total``/``isLast``/``values`` paging.
* ``GET /rest/api/3/field``, ``GET /rest/agile/1.0/board``, ``GET /rest/api/3/myself``,
  ``GET /rest/api/3/serverInfo``; anything else 404 with a Jira-style body.

Test hooks: ``fail_next(n, status, path=, body=, after=)``, ``drop_next(n, path=, after=)`` (connection closed, no
response; ``after=k`` lets the next k matching requests through first, e.g. "fail from page 3 on"), ``latency``
(seconds to wait before answering each request; constructor argument or attribute),
``set_token(new)``, ``corrupt_next_page_token(n)`` (a page hands out a token the next request gets a 400 for),
``invalidate_page_tokens()``, ``add_issues``/``upsert_issue``/``touch_issue``/``delete_issue``, ``requests``
(a log of `FakeRequest`: method, path, query, body, status) and ``requests_to(path)``. ``path_prefix="/jira"``
serves the API under a prefix (``base_url`` includes it), like a self-hosted Jira behind a context path.

JQL understood (clauses joined by AND; anything else answers 400 like a JQL syntax error):
``updated|created  >=|>|<=|<|=  <epoch ms> | "yyyy-MM-dd[ HH:mm]" | "yyyy/MM/dd[ HH:mm]"`` (the connector
sends epoch milliseconds, e.g. ``updated >= 1704067200000 ORDER BY updated asc``), ``project in (<ids or
keys>)`` / ``project = X`` (an unknown project answers 400 "The value 'X' does not exist for the field
'project'." like Jira), ``key|issuekey = K`` / ``in (...)``, and ``ORDER BY updated|created|key|id asc|desc``
(ties broken by id; default order: created DESC). Dates are compared in UTC.

Issue data is deterministic for a given ``seed`` and ``issue_count``; ``updated`` values are strictly increasing
in creation order and look like ``2024-01-01T19:50:58.123+0000``.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import json
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

UTC = timezone.utc

REMOVED_SEARCH_MESSAGE = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
BAD_TOKEN_MESSAGE = "The provided next page token is invalid or expired."
UNAUTHORIZED_MESSAGE = "Client must be authenticated to access this resource."

DEFAULT_PROJECTS = (
    {"id": "10000", "key": "PROJ", "name": "Project One"},
    {"id": "10001", "key": "OPS", "name": "Operations"},
)
_STATUSES = (
    {"id": "10000", "name": "To Do", "category": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"}},
    {"id": "3", "name": "In Progress", "category": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"}},
    {"id": "10001", "name": "Done", "category": {"id": 3, "key": "done", "colorName": "green", "name": "Done"}},
)
_ISSUE_TYPES = (("10001", "Task"), ("10002", "Bug"), ("10003", "Story"))
_PRIORITIES = (("1", "Highest"), ("2", "High"), ("3", "Medium"), ("4", "Low"))
_WORDS = ("login", "export", "report", "cache", "timeout", "dashboard", "billing", "search", "upload", "sync",
          "api", "email", "invoice", "permissions", "latency", "crash", "import", "filter", "webhook", "audit")
_USERS = (
    {"accountId": "5b10a2844c20165700ede21g", "displayName": "Alice Example"},
    {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Bob Example"},
    {"accountId": "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077", "displayName": "Carol Example"},
)
_FIELDS = (
    ("summary", "Summary", False, "string"), ("status", "Status", False, "status"),
    ("project", "Project", False, "project"), ("issuetype", "Issue Type", False, "issuetype"),
    ("priority", "Priority", False, "priority"), ("created", "Created", False, "datetime"),
    ("updated", "Updated", False, "datetime"), ("reporter", "Reporter", False, "user"),
    ("assignee", "Assignee", False, "user"), ("labels", "Labels", False, "array"),
    ("description", "Description", False, "string"), ("resolution", "Resolution", False, "resolution"),
    ("resolutiondate", "Resolved", False, "datetime"), ("duedate", "Due date", False, "date"),
    ("customfield_10016", "Story point estimate", True, "number"),
    ("customfield_10020", "Sprint", True, "array"),
)


def format_jira_datetime(dt: datetime) -> str:
    """``2024-01-01T19:50:58.123+0000`` (UTC)."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"


def parse_jira_datetime(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    text = value.strip()
    if re.search(r"[+-]\d{4}$", text):  # +0000 -> +00:00 for fromisoformat
        text = text[:-2] + ":" + text[-2:]
    text = text.replace("Z", "+00:00")
    dt = datetime.fromisoformat(text)
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def _epoch_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@dataclass
class FakeRequest:
    """One request as the fake saw it. ``query`` holds the first value of each query parameter."""

    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    status: int | None = None  # None when the connection was dropped
    authorized: bool = False
    raw_query: dict[str, list[str]] = field(default_factory=dict, repr=False)


class JiraError(Exception):
    def __init__(self, status: int, messages: Iterable[str] | str, errors: dict | None = None):
        self.status = status
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        self.errors = errors or {}
        super().__init__(f"{status}: {self.messages}")

    def body(self) -> dict:
        return {"errorMessages": self.messages, "errors": self.errors}


class _Fault:
    def __init__(self, kind: str, count: int, status: int | None, path: str | None, body: Any = None, after: int = 0):
        self.kind, self.remaining, self.status, self.path, self.body = kind, count, status, path, body
        self.skip = max(0, int(after))  # matching requests to let through before this fault starts firing

    def applies(self, path: str) -> bool:
        return self.remaining > 0 and (self.path is None or path.startswith(self.path))


class FakeJira:
    """A fake Jira Cloud site on a loopback ``ThreadingHTTPServer`` (daemon thread). See the module docstring."""

    def __init__(
        self,
        *,
        seed: int = 0,
        issue_count: int = 120,
        projects: Iterable[dict] | None = None,
        email: str = "robot@example.com",
        token: str = "good-token",
        start: datetime | str = "2024-01-01T08:00:00.000+0000",
        host: str = "127.0.0.1",
        path_prefix: str = "",
        latency: float = 0.0,
    ):
        self.email = email
        self.latency = latency  # seconds slept before answering each request (e.g. so a SIGKILL lands mid-stream)
        self.token = token
        self.seed = seed
        self.requests: list[FakeRequest] = []
        self._lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._rng = random.Random(seed)
        self._start = parse_jira_datetime(start)
        self._host = host
        self.path_prefix = ("/" + path_prefix.strip("/")) if path_prefix.strip("/") else ""
        self._corrupt_tokens = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._token_secret = hashlib.sha256(f"fake-jira-{seed}".encode()).hexdigest()[:16]
        self._projects = [dict(p) for p in (projects or DEFAULT_PROJECTS)]
        self._issues: dict[str, dict] = {}  # id -> internal issue (datetimes kept as datetime)
        self._next_id = 10000
        self._next_key: dict[str, int] = {p["key"]: 1 for p in self._projects}
        self._clock = self._start
        self.add_issues(issue_count)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeJira":
        if self._server is not None:
            return self
        handler = type("FakeJiraHandler", (_Handler,), {"fake": self})
        server = _QuietServer((self._host, 0), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-jira", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> "FakeJira":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeJira is not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}{self.path_prefix}"

    # ------------------------------------------------------------------ data
    @property
    def projects(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._projects)

    @property
    def issues(self) -> list[dict]:
        """All issues as the API renders them with ``fields=*all``, in id order."""
        with self._lock:
            return [self._render_issue(i, None, set()) for i in sorted(self._issues.values(), key=_id_key)]

    def issue(self, issue_id: str) -> dict:
        with self._lock:
            return self._render_issue(self._issues[str(issue_id)], None, set())

    def add_issues(self, n: int, *, project: str | None = None) -> list[dict]:
        """Create ``n`` issues (deterministic from the seed). Each one is created and updated after every
        existing issue; returns them rendered."""
        created = []
        with self._lock:
            for _ in range(n):
                created.append(self._new_issue(project))
            return [self._render_issue(i, None, set()) for i in created]

    def upsert_issue(self, issue_id: str | None = None, *, project: str | None = None,
                     updated: str | datetime | None = None, created: str | datetime | None = None,
                     **fields: Any) -> dict:
        """Create (``issue_id`` None or unknown) or modify an issue. ``fields`` are set in ``issue["fields"]``
        (e.g. ``summary="New title"``). ``updated`` defaults to "now" for modifications (see `touch_issue`)."""
        with self._lock:
            if issue_id is None or str(issue_id) not in self._issues:
                issue = self._new_issue(project, issue_id=issue_id)
                if created is not None:
                    issue["created"] = parse_jira_datetime(created)
                if updated is not None:
                    issue["updated"] = parse_jira_datetime(updated)
            else:
                issue = self._issues[str(issue_id)]
                if project is not None:
                    issue["project"] = self._project(project)
                if created is not None:
                    issue["created"] = parse_jira_datetime(created)
                issue["updated"] = parse_jira_datetime(updated) if updated is not None else self._now()
            issue["fields"].update(copy.deepcopy(fields))
            return self._render_issue(issue, None, set())

    def touch_issue(self, issue_id: str, updated: str | datetime | None = None) -> dict:
        """Bump an issue's ``updated`` (default: the current wall clock, UTC, ms precision)."""
        with self._lock:
            issue = self._issues[str(issue_id)]
            issue["updated"] = parse_jira_datetime(updated) if updated is not None else self._now()
            return self._render_issue(issue, None, set())

    def delete_issue(self, issue_id: str) -> None:
        with self._lock:
            del self._issues[str(issue_id)]

    # ------------------------------------------------------------------ faults and auth
    def fail_next(self, n: int, status: int = 500, *, path: str | None = None, body: Any = None,
                  after: int = 0) -> None:
        """The next ``n`` requests (to paths starting with ``path``, if given) answer ``status`` with ``body``
        (default: a Jira-style ``errorMessages`` body) and no Retry-After header (429 included). With ``after=k``
        the first k matching requests (counted from now, retries included) are answered normally first. Faults
        are consumed in the order they were added; they apply before the auth check."""
        with self._lock:
            self._faults.append(_Fault("fail", n, status, path, body, after))

    def drop_next(self, n: int, *, path: str | None = None, after: int = 0) -> None:
        """The next ``n`` requests (optionally only under ``path``; after ``after`` matching ones were let
        through) get their connection closed, no response."""
        with self._lock:
            self._faults.append(_Fault("drop", n, None, path, None, after))

    def corrupt_next_page_token(self, n: int = 1) -> None:
        """The next ``n`` search/jql pages that have a successor carry a garbage ``nextPageToken``; sending it
        back answers 400 (what Jira does with a token it cannot read)."""
        with self._lock:
            self._corrupt_tokens += n

    def invalidate_page_tokens(self) -> None:
        """Every nextPageToken handed out so far becomes invalid (400), as if Jira had expired them."""
        with self._lock:
            self._token_secret = hashlib.sha256((self._token_secret + "x").encode()).hexdigest()[:16]

    def set_token(self, new: str) -> None:
        """Rotate the API token: the old one answers 401 from now on."""
        with self._lock:
            self.token = new

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def requests_to(self, path: str) -> list[FakeRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # ------------------------------------------------------------------ internals: data
    def _now(self) -> datetime:
        now = datetime.now(UTC)
        return now.replace(microsecond=(now.microsecond // 1000) * 1000)

    def _project(self, id_or_key: str) -> dict:
        for p in self._projects:
            if str(id_or_key) in (p["id"], p["key"]):
                return p
        raise KeyError(f"unknown project {id_or_key!r}")

    def _new_issue(self, project: str | None, issue_id: str | None = None) -> dict:
        rng = self._rng
        if issue_id is None:
            while str(self._next_id) in self._issues:
                self._next_id += 1
            issue_id = str(self._next_id)
            self._next_id += 1
        issue_id = str(issue_id)
        proj = self._project(project) if project else self._projects[(int(issue_id) if issue_id.isdigit() else len(self._issues)) % len(self._projects)]
        number = self._next_key[proj["key"]]
        self._next_key[proj["key"]] = number + 1
        # strictly increasing timestamps in creation order, with millisecond noise
        self._clock += timedelta(minutes=rng.randint(5, 180), seconds=rng.randint(0, 59), milliseconds=rng.randint(1, 999))
        created = self._clock
        updated = created + timedelta(seconds=rng.randint(0, 59), milliseconds=rng.randint(0, 999))
        self._clock = updated
        status = rng.choice(_STATUSES)
        itype = rng.choice(_ISSUE_TYPES)
        prio = rng.choice(_PRIORITIES)
        reporter = rng.choice(_USERS)
        assignee = rng.choice(_USERS + (None,))
        words = rng.sample(_WORDS, 3)
        summary = f"{words[0].capitalize()} {words[1]} fails with {words[2]}"
        points = rng.choice([None, 1, 2, 3, 5, 8])
        labels = sorted(rng.sample(["backend", "frontend", "customer", "infra", "urgent"], rng.randint(0, 2)))
        issue = {
            "id": issue_id,
            "key": f"{proj['key']}-{number}",
            "project": proj,
            "created": created,
            "updated": updated,
            "fields": {
                "summary": summary,
                "status_ref": status,
                "issuetype_ref": itype,
                "priority_ref": prio,
                "reporter_ref": reporter,
                "assignee_ref": assignee,
                "labels": labels,
                "description": {
                    "type": "doc", "version": 1,
                    "content": [{"type": "paragraph", "content": [{"type": "text", "text": f"Steps: {' '.join(words)}."}]}],
                },
                "resolution": None,
                "resolutiondate": None,
                "duedate": None,
                "customfield_10016": points,
                "customfield_10020": None,
            },
        }
        self._issues[issue_id] = issue
        return issue

    def _user(self, u: dict | None) -> dict | None:
        if u is None:
            return None
        return {"self": f"{self._site()}/rest/api/3/user?accountId={u['accountId']}", "accountId": u["accountId"],
                "displayName": u["displayName"], "active": True, "timeZone": "Etc/UTC", "accountType": "atlassian",
                "avatarUrls": {"48x48": "https://avatar.example/48.png"}}

    def _site(self) -> str:
        return self.base_url if self._server is not None else f"http://127.0.0.1{self.path_prefix}"

    def _render_project(self, p: dict, expand: set[str]) -> dict:
        out = {
            "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
            "self": f"{self._site()}/rest/api/3/project/{p['id']}",
            "id": p["id"], "key": p["key"], "name": p["name"],
            "avatarUrls": {"48x48": f"https://avatar.example/project/{p['id']}.png"},
            "projectTypeKey": "software", "simplified": False, "style": "classic", "isPrivate": False,
            "properties": {}, "entityId": f"00000000-0000-0000-0000-0000000{p['id']}", "uuid": f"uuid-{p['id']}",
        }
        if "description" in expand:
            out["description"] = f"{p['name']} (fake)"
        if "lead" in expand:
            out["lead"] = self._user(_USERS[0])
        return out

    def _render_issue(self, issue: dict, wanted: set[str] | None, expand: set[str]) -> dict:
        """``wanted`` None = all fields; an empty set = id only (Jira's search/jql default)."""
        f = issue["fields"]
        status, itype, prio = f["status_ref"], f["issuetype_ref"], f["priority_ref"]
        p = issue["project"]
        all_fields = {
            "summary": f["summary"],
            "status": {"self": f"{self._site()}/rest/api/3/status/{status['id']}", "id": status["id"],
                       "name": status["name"], "description": "",
                       "statusCategory": {"self": f"{self._site()}/rest/api/3/statuscategory/{status['category']['id']}",
                                          **status["category"]}},
            "project": {"self": f"{self._site()}/rest/api/3/project/{p['id']}", "id": p["id"], "key": p["key"],
                        "name": p["name"], "projectTypeKey": "software", "simplified": False,
                        "avatarUrls": {"48x48": f"https://avatar.example/project/{p['id']}.png"}},
            "issuetype": {"self": f"{self._site()}/rest/api/3/issuetype/{itype[0]}", "id": itype[0], "name": itype[1],
                          "subtask": False, "hierarchyLevel": 0},
            "priority": {"self": f"{self._site()}/rest/api/3/priority/{prio[0]}", "id": prio[0], "name": prio[1]},
            "created": format_jira_datetime(issue["created"]),
            "updated": format_jira_datetime(issue["updated"]),
            "reporter": self._user(f["reporter_ref"]),
            "assignee": self._user(f["assignee_ref"]),
        }
        for k, v in f.items():
            if not k.endswith("_ref"):
                all_fields[k] = copy.deepcopy(v)
        out: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": issue["id"],
            "self": f"{self._site()}/rest/api/3/issue/{issue['id']}",
            "key": issue["key"],
        }
        if wanted is None:
            out["fields"] = all_fields
        elif wanted:
            out["fields"] = {k: v for k, v in all_fields.items() if k in wanted}
        if "renderedFields" in expand:
            out["renderedFields"] = {
                "description": f"<p>{f['description']['content'][0]['content'][0]['text'] if f.get('description') else ''}</p>",
                "created": issue["created"].strftime("%d/%b/%y %I:%M %p"),
                "updated": issue["updated"].strftime("%d/%b/%y %I:%M %p"),
                "resolutiondate": None,
            }
        if "transitions" in expand:
            out["transitions"] = [
                {"id": str(i * 10 + 11), "name": s["name"], "hasScreen": False, "isGlobal": True, "isInitial": False,
                 "isAvailable": True, "isConditional": False, "isLooped": False,
                 "to": {"id": s["id"], "name": s["name"], "statusCategory": s["category"]}}
                for i, s in enumerate(_STATUSES)
            ]
        if "changelog" in expand:
            out["changelog"] = {"startAt": 0, "maxResults": 0, "total": 0, "histories": []}
        return out

    # ------------------------------------------------------------------ internals: JQL
    def _parse_jql(self, jql: str):
        text = (jql or "").strip()
        order = [("created", True)]
        m = re.search(r"\border\s+by\s+(.+)$", text, re.I | re.S)
        if m:
            order = []
            for term in m.group(1).split(","):
                parts = term.split()
                if not parts or parts[0].lower() not in ("updated", "created", "key", "id", "issuekey"):
                    raise JiraError(400, f"Error in the JQL Query: cannot order by '{term.strip()}' (fake Jira supports updated, created, key, id).")
                desc = len(parts) > 1 and parts[1].lower() == "desc"
                if len(parts) > 1 and parts[1].lower() not in ("asc", "desc"):
                    raise JiraError(400, f"Error in the JQL Query: Expecting either 'ASC' or 'DESC' but got '{parts[1]}'.")
                order.append((parts[0].lower(), desc))
            text = text[: m.start()].strip()
        preds = []
        if text:
            if re.search(r"\bor\b|\bnot\b|[()]\s*(?:and)\s*[(]", text, re.I):
                raise JiraError(400, "Error in the JQL Query: fake Jira only understands clauses joined by AND.")
            for clause in re.split(r"\s+and\s+", text, flags=re.I):
                preds.append(self._parse_clause(clause.strip()))
        return preds, order

    def _parse_clause(self, clause: str):
        m = re.fullmatch(r"(updated|created)\s*(>=|<=|>|<|=)\s*(.+)", clause, re.I)
        if m:
            fieldname, op, raw = m.group(1).lower(), m.group(2), m.group(3).strip()
            bound, precision_ms = self._parse_jql_date(raw)
            ops = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
                   "<": lambda a, b: a < b, "=": lambda a, b: a == b}
            cmp = ops[op]

            def pred(issue, fieldname=fieldname, cmp=cmp, bound=bound, precision_ms=precision_ms):
                value = _epoch_ms(issue[fieldname])
                return cmp(value - value % precision_ms, bound)

            return pred
        m = re.fullmatch(r"project\s+in\s*\(([^)]*)\)|project\s*=\s*(\S+)", clause, re.I)
        if m:
            raw_values = m.group(1) if m.group(1) is not None else m.group(2)
            ids = set()
            for v in (x.strip().strip("'\"") for x in raw_values.split(",")):
                if not v:
                    continue
                try:
                    ids.add(self._project(v)["id"])
                except KeyError:
                    raise JiraError(400, f"The value '{v}' does not exist for the field 'project'.") from None
            return lambda issue, ids=ids: issue["project"]["id"] in ids
        m = re.fullmatch(r"(?:key|issuekey)\s+in\s*\(([^)]*)\)|(?:key|issuekey)\s*=\s*(\S+)", clause, re.I)
        if m:
            raw_values = m.group(1) if m.group(1) is not None else m.group(2)
            keys = {x.strip().strip("'\"").upper() for x in raw_values.split(",") if x.strip()}
            return lambda issue, keys=keys: issue["key"].upper() in keys
        raise JiraError(400, f"Error in the JQL Query: fake Jira cannot parse the clause '{clause}'.")

    @staticmethod
    def _parse_jql_date(raw: str) -> tuple[int, int]:
        """(epoch ms, precision in ms used to truncate the issue's value before comparing)."""
        value = raw.strip().strip("'\"")
        if re.fullmatch(r"-?\d+", value):
            return int(value), 1
        for fmt, precision in (("%Y-%m-%d %H:%M", 60_000), ("%Y/%m/%d %H:%M", 60_000),
                               ("%Y-%m-%d", 86_400_000), ("%Y/%m/%d", 86_400_000)):
            try:
                dt = datetime.strptime(value, fmt).replace(tzinfo=UTC)
            except ValueError:
                continue
            return _epoch_ms(dt), precision
        raise JiraError(400, f"Error in the JQL Query: Date value '{raw}' for field is invalid. Valid formats include: "
                             "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'.")

    def _token(self, jql_hash: str, offset: int) -> str:
        payload = json.dumps({"o": offset, "q": jql_hash, "s": self._token_secret}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(payload).decode().rstrip("=")

    def _read_token(self, token: str, jql_hash: str) -> int:
        try:
            padded = token + "=" * (-len(token) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode()))
            if data["s"] != self._token_secret or data["q"] != jql_hash:
                raise ValueError("foreign token")
            offset = int(data["o"])
            if offset < 0:
                raise ValueError("negative offset")
            return offset
        except Exception:
            raise JiraError(400, BAD_TOKEN_MESSAGE) from None

    # ------------------------------------------------------------------ internals: endpoints
    def _search_jql(self, params: dict[str, Any]) -> dict:
        jql = params.get("jql") or ""
        fields_param = params.get("fields")
        if fields_param is None:
            wanted: set[str] | None = set()
        else:
            names = fields_param if isinstance(fields_param, list) else str(fields_param).split(",")
            names = [n.strip() for n in names if n.strip()]
            wanted = None if any(n in ("*all", "*navigable") for n in names) else {n for n in names if n != "id"}
        expand_param = params.get("expand") or ""
        expand = set(expand_param if isinstance(expand_param, list) else [e.strip() for e in str(expand_param).split(",")])
        cap = 5000 if wanted == set() else 100
        try:
            max_results = int(params.get("maxResults", 50))
        except (TypeError, ValueError):
            raise JiraError(400, f"The value '{params.get('maxResults')}' is invalid for maxResults.") from None
        if max_results < 0:
            raise JiraError(400, "maxResults must be greater than or equal to 0.")
        max_results = min(max_results, cap) if max_results else 50
        jql_hash = hashlib.sha256(jql.encode()).hexdigest()[:12]
        token = params.get("nextPageToken")
        offset = self._read_token(str(token), jql_hash) if token not in (None, "") else 0
        with self._lock:
            preds, order = self._parse_jql(jql)
            matched = [i for i in self._issues.values() if all(p(i) for p in preds)]
            matched.sort(key=_id_key)
            for name, desc in reversed(order):
                if name in ("key", "issuekey"):
                    keyf = lambda i: (i["key"].split("-")[0], int(i["key"].split("-")[1]))
                elif name == "id":
                    keyf = _id_key
                else:
                    keyf = lambda i, name=name: i[name]
                matched.sort(key=keyf, reverse=desc)
            page = matched[offset: offset + max_results]
            out: dict[str, Any] = {"issues": [self._render_issue(i, wanted, expand) for i in page]}
            if offset + max_results < len(matched):
                if self._corrupt_tokens > 0:
                    self._corrupt_tokens -= 1
                    out["nextPageToken"] = "Cg9nYXJiYWdlLXRva2VuLXh5eg"  # decodes to junk: rejected with a 400
                else:
                    out["nextPageToken"] = self._token(jql_hash, offset + max_results)
                out["isLast"] = False
            else:
                out["isLast"] = True
            if "names" in expand:
                out["names"] = {fid: name for fid, name, _c, _t in _FIELDS}
            return out

    def _project_search(self, query: dict[str, str]) -> dict:
        start_at, max_results = _int(query, "startAt", 0), min(_int(query, "maxResults", 50), 100) or 50
        expand = {e.strip() for e in query.get("expand", "").split(",")}
        with self._lock:
            projects = list(self._projects)
            keys = query.get("keys")
            if keys:
                wanted = {k.strip() for k in keys.split(",")}
                projects = [p for p in projects if p["key"] in wanted or p["id"] in wanted]
            values = [self._render_project(p, expand) for p in projects[start_at: start_at + max_results]]
        total = len(projects)
        is_last = start_at + max_results >= total
        out = {"self": f"{self._site()}/rest/api/3/project/search?startAt={start_at}&maxResults={max_results}",
               "maxResults": max_results, "startAt": start_at, "total": total, "isLast": is_last, "values": values}
        if not is_last:
            out["nextPage"] = f"{self._site()}/rest/api/3/project/search?startAt={start_at + max_results}&maxResults={max_results}"
        return out

    def _boards(self, query: dict[str, str]) -> dict:
        start_at, max_results = _int(query, "startAt", 0), min(_int(query, "maxResults", 50), 50) or 50
        with self._lock:
            boards = [
                {"id": n + 1, "self": f"{self._site()}/rest/agile/1.0/board/{n + 1}", "name": f"{p['key']} board",
                 "type": "scrum", "location": {"projectId": int(p["id"]), "displayName": f"{p['name']} ({p['key']})",
                                               "projectName": p["name"], "projectKey": p["key"],
                                               "projectTypeKey": "software", "name": f"{p['name']} ({p['key']})"}}
                for n, p in enumerate(self._projects)
            ]
        page = boards[start_at: start_at + max_results]
        return {"maxResults": max_results, "startAt": start_at, "total": len(boards),
                "isLast": start_at + max_results >= len(boards), "values": page}

    def _fields(self) -> list[dict]:
        return [
            {"id": fid, "key": fid, "name": name, "custom": custom, "orderable": True, "navigable": True,
             "searchable": True, "clauseNames": [fid if custom else fid, f"cf[{fid.split('_')[-1]}]"] if custom else [fid],
             "schema": {"type": t, **({"custom": "com.atlassian.jira.plugin.system.customfieldtypes:float",
                                       "customId": int(fid.split("_")[-1])} if custom else {"system": fid})}}
            for fid, name, custom, t in _FIELDS
        ]

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if path.rstrip("/") in ("/rest/api/3/search", "/rest/api/2/search"):
            return 410, {"errorMessages": [REMOVED_SEARCH_MESSAGE], "errors": {}}
        if path == "/rest/api/3/search/jql":
            if method == "GET":
                return 200, self._search_jql(query)
            if method == "POST":
                if not isinstance(body, dict):
                    raise JiraError(400, "Invalid request payload. Refer to the REST API documentation and try again.")
                return 200, self._search_jql(body)
            raise JiraError(405, "Method not allowed.")
        if method != "GET":
            raise JiraError(405, "Method not allowed.")
        if path == "/rest/api/3/project/search":
            return 200, self._project_search(query)
        if path == "/rest/api/3/field":
            return 200, self._fields()
        if path == "/rest/agile/1.0/board":
            return 200, self._boards(query)
        if path == "/rest/api/3/myself":
            return 200, {**self._user(_USERS[0]), "emailAddress": self.email}
        if path == "/rest/api/3/serverInfo":
            return 200, {"baseUrl": self._site(), "version": "1001.0.0-SNAPSHOT", "deploymentType": "Cloud",
                         "buildNumber": 100280, "serverTitle": "Fake Jira"}
        raise JiraError(404, f"null for uri: {self._site()}{path}")

    def _check_auth(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except Exception:
            return False
        with self._lock:
            return user == self.email and password == self.token

    def _take_fault(self, path: str) -> _Fault | None:
        """The fault this request gets, if any. Every matching fault that is still letting requests through
        counts this request; the first (oldest) matching fault that is not fires."""
        chosen = None
        with self._lock:
            for fault in list(self._faults):
                if not fault.applies(path):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                if chosen is None:
                    chosen = fault
            if chosen is not None:
                chosen.remaining -= 1
                if chosen.remaining <= 0:
                    self._faults.remove(chosen)
        return chosen


def _id_key(issue: dict) -> tuple:
    i = issue["id"]
    return (0, int(i), "") if i.isdigit() else (1, 0, i)


def _int(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except (TypeError, ValueError):
        raise JiraError(400, f"The value '{query.get(name)}' is invalid for {name}.") from None


class _QuietServer(ThreadingHTTPServer):
    """A client that goes away mid-response (a SIGKILLed sync, a dropped connection) is normal here: no traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeJira  # set on the per-server subclass
    protocol_version = "HTTP/1.1"
    server_version = "FakeJira/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        fake = self.fake
        split = urlsplit(self.path)
        path = split.path
        if fake.path_prefix:
            path = path[len(fake.path_prefix):] if path.startswith(fake.path_prefix + "/") else "/__outside_prefix__" + path
        raw_query = parse_qs(split.query, keep_blank_values=True)
        query = {k: v[0] for k, v in raw_query.items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        body: Any = None
        if raw_body:
            try:
                body = json.loads(raw_body)
            except ValueError:
                body = raw_body.decode("utf-8", "replace")
        record = FakeRequest(method=method, path=path, query=query, body=body, raw_query=raw_query)
        with fake._lock:
            fake.requests.append(record)
        if fake.latency > 0:
            time.sleep(fake.latency)
        fault = fake._take_fault(path)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault is not None:
            messages = {429: "Rate limit exceeded.", 500: "Internal server error.", 503: "Service Unavailable"}
            body = fault.body if fault.body is not None else {
                "errorMessages": [messages.get(fault.status, "Injected failure.")], "errors": {}}
            return self._send(record, fault.status, body)
        record.authorized = fake._check_auth(self.headers.get("Authorization"))
        if not record.authorized:
            return self._send(record, 401, {"errorMessages": [UNAUTHORIZED_MESSAGE], "errors": {}},
                              extra_headers={"WWW-Authenticate": 'OAuth realm="https%3A%2F%2Ffake.atlassian.net"'})
        try:
            status, payload = fake._route(method, path, query, body)
        except JiraError as e:
            status, payload = e.status, e.body()
        except Exception as e:  # a bug in the fake: make it visible
            status, payload = 500, {"errorMessages": [f"fake jira crashed: {e!r}"], "errors": {}}
        self._send(record, status, payload)

    def _send(self, record: FakeRequest, status: int, payload: Any, extra_headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
