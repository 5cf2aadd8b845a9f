"""Bounded operations (check, discover): no retries in the calling thread (`bounded_requests`), a check that names
real streams (`repaired_check`), and what discover needs the network for (`network_needs`).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from .tree import component_types, is_ref, ref_target, static_stream_names

# Set (to a BoundedRequests) in a thread inside `bounded_requests`; the switches installed once check it.
_bounded = threading.local()
_switch_lock = threading.Lock()


class BoundedRequests:
    """What `bounded_requests` saw: the last OAuth token refresh that could not connect (the CDK keeps only a
    generic "OAuth access token refresh request failed due to a network error." in a check's answer)."""

    def __init__(self) -> None:
        self.oauth_error: BaseException | None = None


@contextmanager
def bounded_requests() -> Iterator[BoundedRequests]:
    """In the current thread, every HTTP request of the CDK is tried once: no retries, no backoff.

    The CDK's no-retry switch (`build_declarative_source`) reaches only the requesters its factory builds. Two
    other kinds of request retry on their own and made check and discover wait for minutes on an unreachable
    host: OAuth token refreshes (``AbstractOauth2Authenticator._make_handled_request``, ``backoff`` with
    ``max_time=300`` fixed at import: hubspot, google-sheets) and ``HttpClient``s that components and
    authenticators build themselves (github's ``RateLimitedMultipleTokenAuthenticator`` asks ``/rate_limit``
    through its own client, 5 retries with backoff). Both are replaced once, process-wide, by versions that
    behave exactly as before except in a thread inside ``with bounded_requests():``, where they make one attempt
    (and a refresh that cannot connect is noted). Declarative check and discover make their requests in the
    calling thread; a sync's reads (worker threads, no ``bounded_requests``) are never affected.
    """
    _install_retry_switches()
    previous = getattr(_bounded, "seen", None)
    seen = _bounded.seen = BoundedRequests()
    try:
        yield seen
    finally:
        _bounded.seen = previous


def _install_retry_switches() -> None:
    import requests
    from airbyte_cdk.sources.streams.http.http_client import HttpClient
    from airbyte_cdk.sources.streams.http.requests_native_auth.abstract_oauth import AbstractOauth2Authenticator

    with _switch_lock:
        retrying = AbstractOauth2Authenticator.__dict__.get("_make_handled_request")
        once = getattr(retrying, "__wrapped__", None)  # `backoff` keeps the plain function (functools.wraps)
        if retrying is not None and once is not None and not getattr(retrying, "_ingest_switch", False):
            def _make_handled_request(self):
                seen = getattr(_bounded, "seen", None)
                if seen is None:
                    return retrying(self)
                try:
                    return once(self)
                except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                    seen.oauth_error = exc
                    raise

            _make_handled_request._ingest_switch = True
            _make_handled_request.__wrapped__ = once
            AbstractOauth2Authenticator._make_handled_request = _make_handled_request

        max_retries = HttpClient.__dict__.get("_max_retries")
        if isinstance(max_retries, property) and not getattr(max_retries.fget, "_ingest_switch", False):
            configured = max_retries.fget

            def _max_retries(self) -> int:
                return 0 if getattr(_bounded, "seen", None) is not None else configured(self)

            _max_retries._ingest_switch = True
            HttpClient._max_retries = property(_max_retries, doc=max_retries.__doc__)


def repaired_check(manifest: dict, prefer: list[str] | tuple[str, ...] = ()) -> tuple[dict, str | None]:
    """The manifest with its ``CheckStream`` made to check something, and a note on what was changed (or None).

    * A stream name that matches no stream exactly but exactly one case-insensitively is replaced by that stream
      (zendesk-support 4.9.1 checks ``Tags``; the stream is ``tags``). No CDK ever matched loosely: the package's
      own Python ``check_connection`` replaced the manifest's check, so the typo never ran.
    * A check naming no stream at all (github 2.7.1: ``stream_names: []``; its Python check resolved the
      repositories instead) would "succeed" without a single request. It checks the first of ``prefer`` (the
      block's streams) that the manifest defines statically, else the manifest's first stream.

    Other checks (``CheckDynamicStream``, dynamic stream configs, names that fit nothing) are left as they are.
    ``manifest`` is not modified.
    """
    check = manifest.get("check")
    resolved = ref_target(manifest, check["$ref"]) if isinstance(check, dict) and is_ref(check.get("$ref")) else None
    merged = {**(resolved if isinstance(resolved, dict) else {}), **(check if isinstance(check, dict) else {})}
    merged.pop("$ref", None)
    if merged.get("type", "CheckStream") != "CheckStream" or merged.get("dynamic_streams_check_configs"):
        return manifest, None
    wanted = merged.get("stream_names")
    if not isinstance(wanted, list):
        return manifest, None
    streams = static_stream_names(manifest)
    if not streams:
        return manifest, None
    if not wanted:
        chosen = next((name for name in prefer if name in streams), streams[0])
        names, note = [chosen], f"the manifest's check names no stream; checking stream {chosen!r}"
    else:
        names, changed = [], []
        for name in wanted:
            matches = [s for s in streams if isinstance(name, str) and s.lower() == name.lower()]
            if name not in streams and len(matches) == 1:
                changed.append(f"{name!r} as {matches[0]!r}")
                name = matches[0]
            names.append(name)
        if not changed:
            return manifest, None
        note = f"the manifest's check names stream {', '.join(changed)}"
    return {**manifest, "check": {**merged, "stream_names": names}}, note


def network_needs(manifest: dict) -> str | None:
    """What discover asks the API for: "dynamic streams" (a ``dynamic_streams`` section: hubspot's custom objects,
    google-sheets' sheets), "dynamic schemas" (a ``DynamicSchemaLoader`` on a static stream), or None when discover
    needs no network."""
    if manifest.get("dynamic_streams"):
        return "dynamic streams"
    if "DynamicSchemaLoader" in component_types({k: v for k, v in manifest.items() if k != "type"}):
        return "dynamic schemas"
    return None
