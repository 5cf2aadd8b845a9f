"""The puller skeleton: one `Puller` base class owns `read()`, each puller fills in small hooks (Singer SDK's spirit).

Both pullers read the same way — inputs → a plan from the saved state → a bounded concurrent fetch, results in input
order → a checkpoint every N → errors mapped to one `SyncError` → the final state → a summary — and differ only in
what their inputs, work items, rows and state blobs are. So `Puller.read` is that sequence, once:

1. `inputs()`: what to fetch, read from the block's config (a CSV file, a list, or the warehouse through
   `warehouse_rows`, the reader the source was built with);
2. `plan(wanted, state, inputs) -> Plan`: the work items in fetch order, the cursor they start from, rows that need
   no call (inputs that cannot be fetched), the opening log line and how often to checkpoint;
3. `fetch(client, item, plan)` on `max_concurrency` worker threads (`ordered_map`): one work item's result;
4. `records(plan, item, result)`: the (stream, row) pairs of a result, in the consumer's thread;
5. `cursor_after(plan, cursor, item, result)`: the state blob once that item is done; every `plan.checkpoint_every`
   (counted in `checkpoint_weight(item)`) it is sent as a STATE of each selected stream, which the runner commits
   with the records before it; `final_state(plan, cursor)` is the STATE sent once everything was fetched;
6. `summary(plan, client)`: the closing log lines.

Plus `_client()` (the `HttpClient` with the puller's policy and auth), `check()` and the class attributes `NAME`,
`SPEC` and `CATALOG` (stream → schema, primary key, cursor), from which `spec()` and `discover()` follow.
"""
from __future__ import annotations

import collections
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from ...errors import SyncError
from ..base import Source
from . import airbyte_stream, log_message, query_rows, record_message, state_message
from .http import FatalHTTPError, HttpClient, RetryableHTTPError, as_sync_error
from .pacing import Cancelled

# The block destination's read-only query, `Destination.query(sql, params) -> rows`: how a puller reads its inputs
# from the warehouse. Given when the source is built (None: the block has no destination to read from).
Warehouse = Callable[[str, "list | None"], "list[dict]"]


@dataclass
class Plan:
    """What one read() does, decided before the first call. Pullers subclass it to keep their own per-read values
    (a snapshot date, counters for the summary)."""

    wanted: dict  # stream name -> its ConfiguredAirbyteStream, the selected streams of this puller
    items: list  # work items, fetched in this order (so a checkpoint always covers a prefix of them)
    opening: str  # the first log line: how much input, how much of it to fetch
    cursor: Any = None  # the state blob before the first item (what the last run left)
    checkpoint_every: int = 1  # a STATE after at least this much work (see Puller.checkpoint_weight)
    before: list[tuple[str, dict]] = field(default_factory=list)  # (stream, row) sent before fetching


class Puller(Source):
    """A `Source` for an HTTP API without a connector; subclasses fill in the hooks (see the module docstring)."""

    NAME: str = ""
    SPEC: dict = {}
    CATALOG: dict[str, tuple[dict, list[str], str | None]] = {}  # stream -> (json schema, primary key, cursor)
    FAILED_STREAM: str | None = None  # the stream a failure is reported for (None: the sync as a whole)
    CHECKPOINT_LAST_ITEM = True  # False: no checkpoint after the last item (the final STATE follows right away)

    def __init__(self, block, *, warehouse: Warehouse | None = None):
        self.block = block
        self.config = dict(block.config or {})
        self.warehouse = warehouse

    # -- hooks

    def inputs(self) -> Any:
        raise NotImplementedError

    def plan(self, wanted: dict, state: list, inputs: Any) -> Plan:
        raise NotImplementedError

    def _client(self) -> HttpClient:
        raise NotImplementedError

    def fetch(self, client: HttpClient, item: Any, plan: Plan) -> Any:
        """One work item (runs on a worker thread)."""
        raise NotImplementedError

    def records(self, plan: Plan, item: Any, result: Any) -> Iterable[tuple[str, dict]]:
        raise NotImplementedError

    def cursor_after(self, plan: Plan, cursor: Any, item: Any, result: Any) -> Any:
        raise NotImplementedError

    def checkpoint_weight(self, item: Any) -> int:
        return 1

    def final_state(self, plan: Plan, cursor: Any) -> dict | None:
        return cursor

    def summary(self, plan: Plan, client: HttpClient | None) -> list[tuple[str, str]]:
        """The closing log lines, as (message, level)."""
        return []

    # -- shared

    def warehouse_rows(self, sql: str, what: str) -> list[dict]:
        """Rows of the block's warehouse query, with normalized column names (`what` names the config key)."""
        return query_rows(self.warehouse, sql, what)

    def spec(self) -> dict:
        return self.SPEC

    def discover(self, *, for_sync: bool = False):
        from . import models

        m = models()
        return m.AirbyteCatalog(streams=[airbyte_stream(name, schema, pk, cursor)
                                         for name, (schema, pk, cursor) in self.CATALOG.items()])

    def read(self, catalog, state: list) -> Iterator[Any]:
        wanted = {cs.stream.name: cs for cs in catalog.streams if cs.stream.name in self.CATALOG}
        if not wanted:
            return
        plan = self.plan(wanted, state, self.inputs())
        yield log_message(plan.opening)
        for stream, row in plan.before:
            yield record_message(stream, row)
        client = self._client() if plan.items else None
        cursor = plan.cursor
        try:
            if client is not None:
                cursor = yield from self._fetch_all(client, plan)
        except (FatalHTTPError, RetryableHTTPError, Cancelled) as exc:
            raise as_sync_error(exc, stream=self.FAILED_STREAM) from None
        except SyncError:
            raise
        except Exception as exc:  # noqa: BLE001 - never a stack trace for the user; the message says what failed
            raise as_sync_error(exc, stream=self.FAILED_STREAM, what=f"{self.NAME} failed") from None
        finally:
            if client is not None:
                client.close()
        yield from self._states(plan, self.final_state(plan, cursor))
        for message, level in self.summary(plan, client):
            yield log_message(message, level)

    def _fetch_all(self, client: HttpClient, plan: Plan):
        """Fetch the plan's items concurrently, send their records in input order and a STATE at every checkpoint;
        returns the cursor after the last item."""
        work = ordered_map(lambda item: self.fetch(client, item, plan), plan.items, client.policy.max_concurrency,
                           name=self.NAME, cancelled=client.cancelled)
        cursor, since = plan.cursor, 0
        for done, (item, result) in enumerate(zip(plan.items, work), 1):
            for stream, row in self.records(plan, item, result):
                yield record_message(stream, row)
            cursor = self.cursor_after(plan, cursor, item, result)
            since += self.checkpoint_weight(item)
            if since >= plan.checkpoint_every and (self.CHECKPOINT_LAST_ITEM or done < len(plan.items)):
                since = 0
                yield from self._states(plan, cursor)
        return cursor

    def _states(self, plan: Plan, blob: dict | None) -> Iterator[Any]:
        if blob is not None:
            for name in plan.wanted:
                yield state_message(name, blob)


# ---------------------------------------------------------------------------------------------- concurrency


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], concurrency: int, *, name: str = "puller",
                cancelled: threading.Event | None = None) -> Iterator[Any]:
    """`map(fn, items)` on a pool of `concurrency` threads, results in input order, at most 2 x concurrency items
    submitted ahead of the consumer. The first exception (in input order) is raised after every earlier result was
    yielded; queued work is cancelled and in-flight work is told to stop (`cancelled`)."""
    if concurrency <= 1:
        for item in items:
            yield fn(item)
        return
    iterator = iter(items)
    pending: collections.deque = collections.deque()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"ingest-{name}")
    try:
        for item in itertools.islice(iterator, concurrency * 2):
            pending.append(pool.submit(fn, item))
        while pending:
            result = pending.popleft().result()
            for item in itertools.islice(iterator, 1):
                pending.append(pool.submit(fn, item))
            yield result
    finally:
        if pending and cancelled is not None:
            cancelled.set()
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------- spec pieces


def input_choice(source: str, key: str, schema: dict) -> dict:
    """One `oneOf` branch of a puller's inputs setting: `{from: <source>, <key>: ...}` and nothing else."""
    return {
        "title": source, "type": "object", "required": ["from", key], "additionalProperties": False,
        "properties": {"from": {"const": source}, key: schema},
    }
