"""Reading API and warehouse values into typed columns, the way both pullers need it: never raising.

APIs like FMCSA's mix date formats within one answer (01/26/2024, 2024-01-26, 2017-01-27T05:00:00.000+0000,
20240126, 26-JAN-24), write numbers as text ("18%", "1,000", "$750") and put words where numbers are expected
("insufficient data", "Not Public"). A value that cannot be read is None here; the puller decides what that means
(a NULL, an `unparsed` entry, an ERROR row), so one odd value never fails a load.
"""
from __future__ import annotations

import datetime as dt
import decimal
import html
import re
from typing import Any

import orjson


_DATE_FORMATS = ("%m/%d/%Y", "%m/%d/%y", "%Y%m%d", "%d-%b-%y", "%d-%b-%Y", "%b %d, %Y", "%Y/%m/%d", "%m-%d-%Y")


def parse_datetime(value: Any) -> dt.datetime | None:
    """Mixed-format timestamps → aware UTC datetime, or None when it cannot be read (never raises).
    ISO 8601 (with Z, +00:00 or +0000), the date formats of `parse_date` (midnight UTC), epoch seconds/ms."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    if isinstance(value, (int, float)):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    text = str(value).strip()
    if not text:
        return None
    iso = text.replace("Z", "+00:00") if text.endswith("Z") else text
    iso = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", iso)
    try:
        parsed = dt.datetime.fromisoformat(iso)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    except ValueError:
        pass
    d = _parse_date_text(text)
    if d is not None:
        return dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc)
    if re.fullmatch(r"\d{10}|\d{13}", text):
        return parse_datetime(int(text))
    return None


def parse_date(value: Any) -> dt.date | None:
    """Mixed-format dates → date, or None (never raises): 2024-01-26, 01/26/2024, 1/26/24, 20240126, 26-JAN-24,
    Jan 26, 2024, ISO timestamps (their date part)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    if not text:
        return None
    d = _parse_date_text(text)
    if d is not None:
        return d
    parsed = parse_datetime(text)
    return parsed.date() if parsed is not None else None


def _parse_date_text(text: str) -> dt.date | None:
    if re.match(r"^\d{4}-\d{2}-\d{2}($|[T ])", text):
        try:
            return dt.date.fromisoformat(text[:10])
        except ValueError:
            return None
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text.title() if "%b" in fmt else text, fmt).date()
        except ValueError:
            continue
    return None


def parse_number(value: Any) -> float | None:
    """'18%', '1,234.5', ' 65 ', 4.3 → float; words ('insufficient data', 'Not Public') → None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().replace(",", "").rstrip("%").strip()
    if text.startswith("$"):
        text = text[1:]
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def parse_int(value: Any) -> int | None:
    number = parse_number(value)
    return int(number) if number is not None and number.is_integer() else None


_TRUE = {"y", "yes", "true", "t", "1"}
_FALSE = {"n", "no", "false", "f", "0"}


def parse_flag(value: Any) -> bool | None:
    """Y/N, yes/no, true/false, 1/0 → bool; anything else ('u', '-1', 'Not Public', None) → None."""
    if isinstance(value, bool):
        return value
    if value is None:
        return None
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def clean_text(value: Any) -> str | None:
    """Strings as shown to people: HTML entities decoded, zero-width characters removed, trimmed; '' → None."""
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    text = html.unescape(str(value)).replace("\u200b", "").strip()
    return text or None


def json_value(value: Any) -> Any:
    """A warehouse value as a JSON-friendly value (dates as ISO text, decimals as float)."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value
