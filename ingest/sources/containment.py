"""Containing the process-wide side effects of running Airbyte connector code in-process.

See shared/reference/airbyte-in-process.md. What we contain, and how:
1. The CDK's import replaces the root logger's handlers with one writing Airbyte JSON to the real stdout
   -> `import_cdk()` imports it once and puts our handlers back; the `airbyte` logger propagates to ours.
   Two kinds of connector log lines are detail, shown only when DEBUG is enabled (`-vv`): the `backoff` library's
   retry lines ("Backing off ...", "Giving up ..." at ERROR) and the traceback TEXT the CDK writes into messages
   ("... Error traceback: ..."), which no handler's exc_info stripping can catch.
2. Bare print() from connector threads -> stdout is redirected to a logger for the duration of a sync.
3. The shared in-memory HTTP response cache (keyed without the Authorization header!) -> every sync gets a fresh
   REQUEST_CACHE_PATH temp dir, removed afterwards, so two syncs never see each other's responses.
4. Environment variables a connector sets -> restored after the sync.
We call the source's methods directly (never `launch()`), so sys.excepthook and sys.stdout/stderr are untouched.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import threading

from ..secrets import REDACTOR

log = logging.getLogger("ingest.connector")
_import_lock = threading.Lock()
_imported = False


class _DebugOnly(logging.Filter):
    """Demotes every record of its logger to DEBUG and drops it unless DEBUG is enabled there. For `backoff`:
    the CDK logs the same retry in its own words, and a give-up is reported by the sync's error anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


class _NoTracebackText(logging.Filter):
    """Cuts a traceback pasted into a message's text (the CDK's check: "... Error: X Error traceback: \n ...")
    down to the text before it, unless DEBUG is enabled. (exc_info is the handlers' business: the CLI strips it.)"""

    MARKERS = ("Error traceback:", "Traceback:", "Traceback (most recent call last)")

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return True
        message = record.getMessage()
        cut = min((message.find(m) for m in self.MARKERS if m in message), default=-1)
        if cut >= 0:
            record.msg, record.args = message[:cut].rstrip(), ()
        return True


def _quiet_connector_detail() -> None:
    """Install the filters above once (they decide per record, so the CLI's verbosity still applies)."""
    logging.getLogger("backoff").addFilter(_DebugOnly())
    logging.getLogger("airbyte").addFilter(_NoTracebackText())


def import_cdk() -> None:
    """Import the CDK once, undoing its logging takeover."""
    global _imported
    if _imported:
        return
    with _import_lock:
        if _imported:
            return
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        airbyte_level = logging.getLogger("airbyte").level  # the CLI's choice of verbosity
        enabled = {name: lg.disabled for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
        import airbyte_cdk.entrypoint  # noqa: F401  (runs logging.config.dictConfig)
        import airbyte_cdk.logger  # noqa: F401
        import airbyte_cdk.models  # noqa: F401

        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        for h in handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(level)
        for name, was_disabled in enabled.items():
            logging.getLogger(name).disabled = was_disabled
        airbyte_logger = logging.getLogger("airbyte")
        for h in list(airbyte_logger.handlers):
            airbyte_logger.removeHandler(h)
        airbyte_logger.propagate = True
        airbyte_logger.setLevel(airbyte_level)
        _quiet_connector_detail()
        _imported = True


class _LineLogger(io.TextIOBase):
    """A file-like object that turns written lines into (redacted) log records."""

    def __init__(self, logger: logging.Logger, level: int):
        self.logger, self.level, self._buf = logger, level, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buf += text
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            if line.strip():
                self.logger.log(self.level, "connector stdout: %s", REDACTOR.redact(line))
        return len(text)

    def flush(self) -> None:
        if self._buf.strip():
            self.logger.log(self.level, "connector stdout: %s", REDACTOR.redact(self._buf))
        self._buf = ""


@contextlib.contextmanager
def contained():
    """Run a block of connector code with its process-wide side effects contained."""
    import_cdk()
    env_before = dict(os.environ)
    cache_dir = tempfile.mkdtemp(prefix="ingest-http-cache-")
    os.environ["REQUEST_CACHE_PATH"] = cache_dir
    sink = _LineLogger(log, logging.DEBUG)
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        sink.flush()
        for key in set(os.environ) - set(env_before):
            del os.environ[key]
        for key, value in env_before.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        shutil.rmtree(cache_dir, ignore_errors=True)
