"""The one VCR runner: run the real `ingest` CLI (`ingest.cli:main`) inside a vcrpy cassette, in a subprocess, so a
CLI run can be recorded or replayed exactly as a user would type it. Every cassette suite (Jira, Greenscreens,
FMCSA) goes through it; each brings only its `make_vcr(record)` (what to sanitize, what to match on).

    python -m tests.support.cassettes --cassette fixtures/cassettes/jira/issues_initial.yaml -- run jira --stream issues
    python -m tests.support.cassettes --cassette X.yaml --record -- -c connectors.yaml run jira --stream issues
    python -m tests.support.cassettes --vcr tests.fakes.fake_fmcsa:make_vcr --cassette X.yaml -- run carrier_safety

Everything after ``--`` goes to the CLI unchanged; the exit code is the CLI's. `cassette_command(...)` builds such a
command line for a test (it runs from any directory: the repository is put on sys.path).

Replay (the default) uses record mode ``none``: a request that is not in the cassette raises vcrpy's
CannotOverwriteExistingCassetteException inside the connector, so the sync fails (exit 1) instead of reaching
the network. Each recorded response is played at most once, in order of matching, and a successful run that left
recorded interactions unplayed exits 3 (`--allow-unplayed` to accept that).

The default `make_vcr` (the Jira cassettes') records against a loopback server (tests/record_jira_cassettes.py uses
tests/fakes/fake_jira.py). What is stored is sanitized:

* the ``Authorization`` (and ``Cookie``) request headers are dropped;
* ``http://127.0.0.1:<port>`` / ``http://localhost:<port>`` in request URIs and response bodies is rewritten to
  the site (``--site``, default ``https://acme.atlassian.net``), so replay runs with ``domain: acme.atlassian.net``
  and no ``base_url`` - a config exactly like a real user's;
* ``Date``/``Server`` response headers are dropped and ``Content-Length`` is fixed after the rewrite.

Matching: method, scheme, host, port, path and the query string (as a multiset of parameters). The same request
filter is applied to live requests before matching (vcrpy does that), and it is idempotent for requests that
already go to the site.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SITE = "https://acme.atlassian.net"
MATCH_ON = ("method", "scheme", "host", "port", "path", "query")
_LOOPBACK = r"http://(?:127\.0\.0\.1|localhost|\[::1\]):\d+"
LOOPBACK = re.compile(_LOOPBACK)
LOOPBACK_BYTES = re.compile(_LOOPBACK.encode())
_DROP_RESPONSE_HEADERS = {"date", "server"}


def _patch_vcr_response_for_requests_cache() -> None:
    """The CDK sends parent streams' requests (`issues` is one) through a requests_cache CachedSession, which
    reads `response.raw._request_url` (urllib3 2's HTTPResponse has it); vcrpy's VCRHTTPResponse (stdlib-based)
    does not, and caching a replayed or recorded response fails with AttributeError. Expose its `url` under that
    name. Only in this runner's process."""
    from vcr.stubs import VCRHTTPResponse

    if not hasattr(VCRHTTPResponse, "_request_url"):
        VCRHTTPResponse._request_url = property(lambda self: getattr(self, "url", None))


def make_vcr(record: bool, site: str = DEFAULT_SITE):
    import vcr

    _patch_vcr_response_for_requests_cache()

    site = site.rstrip("/")

    def before_record_request(request):
        # vcrpy hands us a deep copy; the live request is not modified.
        if LOOPBACK.match(request.uri):
            request.uri = LOOPBACK.sub(site, request.uri, count=1)
        return request

    def before_record_response(response):
        response = copy.deepcopy(response)
        body = response.get("body", {}).get("string")
        if isinstance(body, bytes):
            body = LOOPBACK_BYTES.sub(site.encode(), body)
        elif isinstance(body, str):
            body = LOOPBACK.sub(site, body)
        if body is not None:
            response["body"]["string"] = body
        headers = {k: v for k, v in (response.get("headers") or {}).items() if k.lower() not in _DROP_RESPONSE_HEADERS}
        for key in list(headers):
            if key.lower() == "content-length" and body is not None:
                headers[key] = [str(len(body if isinstance(body, bytes) else body.encode()))]
            elif key.lower() == "www-authenticate":
                headers[key] = [LOOPBACK.sub(site, v) for v in headers[key]]
        response["headers"] = headers
        return response

    return vcr.VCR(
        record_mode="all" if record else "none",
        match_on=MATCH_ON,
        filter_headers=["authorization", "cookie"],
        before_record_request=before_record_request,
        before_record_response=before_record_response,
        decode_compressed_response=True,
    )


def run_cli_in_cassette(cassette: str, cli_args: list[str], vcr_obj, *, check_unplayed: bool = False) -> int:
    """The real `ingest` CLI inside a cassette; returns its exit code (3: replay succeeded but left recorded
    interactions unplayed, when `check_unplayed`)."""
    from ingest.cli import main as ingest_main

    with vcr_obj.use_cassette(cassette, allow_playback_repeats=False) as played:
        try:
            ingest_main.main(args=cli_args, prog_name="ingest", standalone_mode=True)
        except SystemExit as exc:  # click always exits; keep the cassette context until here
            code = exc.code
        else:
            code = 0
    code = 0 if code is None else code if isinstance(code, int) else 1
    if check_unplayed and code == 0 and not played.all_played:
        unplayed = sum(1 for i in range(len(played.data)) if not played.play_counts[i])
        print(f"vcr_cli: {unplayed} recorded interaction(s) of {cassette} were never requested "
              "(the run stopped early or asked for less than was recorded)", file=sys.stderr)
        return 3
    return code


_RUNNER = "import sys; sys.path.insert(0, sys.argv.pop(1)); from tests.support.cassettes import main; sys.exit(main())"


def cassette_command(cassette: Path, *cli_args: str, record: bool = False, vcr: str | None = None,
                     allow_unplayed: bool = False) -> list[str]:
    """The command line that runs `ingest <cli_args>` inside `cassette`; `vcr`: "module:function" of the suite's
    make_vcr(record) (default: this module's, the Jira cassettes')."""
    ours = ["--cassette", str(cassette), *(["--record"] if record else []), *(["--vcr", vcr] if vcr else []),
            *(["--allow-unplayed"] if allow_unplayed else [])]
    return [sys.executable, "-c", _RUNNER, str(ROOT), *ours, "--", *cli_args]


def cassette_env(secrets: dict, drop_prefixes: tuple[str, ...]) -> dict:
    """This process's environment without the variables a suite's project reads (`drop_prefixes`), plus `secrets`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)}
    env.setdefault("METAFLOW_USER", "ci")
    env.update({**secrets, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})
    return env


def record_run(cassette: Path, command: list[str], cwd: Path, env: dict) -> None:
    """Rewrite `cassette` by running a recording `command` (from `cassette_command(..., record=True)`); its output is
    shown, and a failed recording stops the recorder."""
    cassette.unlink(missing_ok=True)
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    sys.stderr.write(proc.stderr)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"recording {cassette.name} failed (exit {proc.returncode})")


def check_written(cassette: Path, *forbidden: str) -> None:
    """A recorded cassette holds none of `forbidden` (secrets, loopback addresses); say what was written."""
    text = cassette.read_text()
    assert not any(f in text for f in forbidden), cassette
    print(f"wrote {cassette.relative_to(ROOT)} ({len(text):,} bytes)")


def recorder_main(record, doc: str) -> int:
    """`python -m tests.fakes.<fake> record`: rewrite that fake's cassettes; anything else prints its docstring."""
    if sys.argv[1:] == ["record"]:
        record()
        return 0
    print(doc)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        split = argv.index("--")
        ours, cli_args = argv[:split], argv[split + 1:]
    else:
        ours, cli_args = argv, []
    parser = argparse.ArgumentParser(prog="vcr_cli", description="Run `ingest` inside a vcrpy cassette.")
    parser.add_argument("--cassette", required=True, help="cassette file (YAML)")
    parser.add_argument("--record", action="store_true", help="record (rewrite the cassette) instead of replaying")
    parser.add_argument("--vcr", help="module:function building the suite's vcr.VCR from `record` (default: Jira's)")
    parser.add_argument("--site", default=DEFAULT_SITE, help="(default VCR) origin that loopback URLs are rewritten to")
    parser.add_argument("--allow-unplayed", action="store_true",
                        help="replay: do not fail when some recorded interactions were never requested")
    opts = parser.parse_args(ours)
    if opts.vcr:
        module, _, name = opts.vcr.partition(":")
        vcr_obj = getattr(importlib.import_module(module), name)(opts.record)
    else:
        vcr_obj = make_vcr(opts.record, opts.site)
    return run_cli_in_cassette(opts.cassette, cli_args, vcr_obj,
                               check_unplayed=not opts.record and not opts.allow_unplayed)


if __name__ == "__main__":
    sys.exit(main())
