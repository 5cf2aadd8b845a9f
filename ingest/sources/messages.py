"""How a connector's failure is told to the user: one clean, redacted line instead of the CDK's quoted Python reprs,
wrapped requests exceptions and tracebacks. One wording for every runtime (in-process and isolated).
"""
from __future__ import annotations

import ast
import re

from ..secrets import REDACTOR

# How the CDK's CheckStream words a failure (CDK 7.39), and what the user is told instead.
_STREAM_FAILED = re.compile(
    r"^(?:Encountered an error while checking availability of stream (?P<a>\S+)\. Error: "
    r"|Stream (?P<b>\S+) is not available: )")
_OTHER_FAILURE = re.compile(r"^Encountered an error while (?P<action>[^.]+)\. Error: ")
_UNKNOWN_CHECK_STREAM = re.compile(r"(?P<name>\S+) is not part of the catalog\. Expected one of ")
_EXHAUSTED = "Exhausted available request attempts. Please see logs for more details. Exception: "
OAUTH_NETWORK = "OAuth access token refresh request failed due to a network error."
_HOST_PORT = re.compile(r"host='(?P<host>[^']+)', port=(?P<port>\d+)")
_CONNECTION_PROBLEMS = (
    ("NameResolutionError", "cannot resolve the host name"),
    ("Failed to resolve", "cannot resolve the host name"),
    ("Connection refused", "connection refused"),
    ("ConnectTimeout", "connection timed out"),
    ("timed out", "timed out"),
    ("SSLError", "TLS handshake failed"),
    ("Network is unreachable", "network unreachable"),
)


def check_message(raw: str) -> str:
    """One clean line from the CDK's check failure. The CDK hands back ``repr(error)`` (a quoted Python string)
    wrapped around a requests exception's text; users get 'stream projects: cannot connect to
    jira.example.com:443 (connection refused)', never quotes, object reprs or tracebacks."""
    text = _unquoted(raw.strip()).split("Error traceback:")[0]
    if unknown := _UNKNOWN_CHECK_STREAM.search(text):  # one `manifest.repaired_check` could not match either
        return f"the manifest's check names stream {unknown.group('name')!r}, which this connector does not have"
    subject, text = _subject(text)
    text = text.replace(_EXHAUSTED, "")
    detail = connection_problem(text) or text.replace("HTTP Status Code: ", "HTTP ").replace(". Error: ", ": ", 1)
    return REDACTOR.redact(" ".join((f"{subject}: {detail}" if subject else detail).split()))


def _unquoted(text: str) -> str:
    """The string a Python repr stands for ("'Encountered ...'" -> "Encountered ..."); other text as it is."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        try:
            return str(ast.literal_eval(text))
        except (ValueError, SyntaxError):
            return text[1:-1]
    return text


def _subject(text: str) -> tuple[str | None, str]:
    """What failed ('stream projects', 'discovering streams') and the rest of the CDK's message."""
    if match := _STREAM_FAILED.match(text):
        return f"stream {match.group('a') or match.group('b')}", text[match.end():]
    if match := _OTHER_FAILURE.match(text):
        return match.group("action"), text[match.end():]
    return None, text


def connection_problem(text: str) -> str | None:
    """'cannot connect to host:port (why)' for a requests/urllib3 connection error text, else None."""
    where = _HOST_PORT.search(text)
    if not where or "Max retries exceeded" not in text:
        return None
    why = next((reason for needle, reason in _CONNECTION_PROBLEMS if needle in text), "connection failed")
    return f"cannot connect to {where.group('host')}:{where.group('port')} ({why})"
