"""What the Jira tests read from the fake's search/jql requests: the window each one asked for."""
from __future__ import annotations

import re

SEARCH_JQL = "/rest/api/3/search/jql"
_WINDOW = re.compile(r"^updated >= (\d+) and updated <= (\d+) ORDER BY updated asc$")


def window_bounds(requests) -> list[tuple[int, int]]:
    """(lower, upper) epoch-ms bounds of each search/jql request, sorted and de-duplicated (pages share bounds)."""
    out = set()
    for r in requests:
        m = _WINDOW.match(r.query["jql"])
        assert m, f"a search/jql request without its window: {r.query['jql']!r}"
        out.add((int(m.group(1)), int(m.group(2))))
    return sorted(out)


def assert_contiguous(bounds: list[tuple[int, int]]) -> None:
    """Windows neither overlap nor leave a gap."""
    for (_, upper), (lower, _) in zip(bounds, bounds[1:]):
        assert lower == upper + 1, f"windows overlap or leave a gap: {upper} → {lower}"
