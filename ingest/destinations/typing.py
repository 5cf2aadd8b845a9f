"""JSON schema → column types, and a batch of records → an Arrow table.

Column types are a small, destination-neutral vocabulary; each destination maps them to its SQL types.
Fast path: one vectorised pyarrow conversion per column; only a column that fails falls back to per-value work.

The rules every destination applies (a value never fails a load, and never disappears):
- A value that does not fit its column lands as NULL, and the original is kept in the row's `_ingest_rejected`
  JSON object (field name → value). That includes integers outside the column's range: DuckDB's BIGINT range,
  ±2^63, for every destination (Snowflake's NUMBER(38,0) would hold more, but a row must read the same everywhere);
  a float like 1e19 or a digit string like "99999999999999999999" in an integer column; a number beyond a double's
  range (10^400) in a number column.
- JSON values (objects, arrays, and anything in a JSON column) are written in full, at any nesting depth. Two
  things have no JSON spelling and are written as strings instead: NaN, Infinity and -Infinity (as "NaN",
  "Infinity", "-Infinity"), and integers of more than 38 digits (as their digits; Snowflake's VARIANT holds 38).
  The same applies to the originals kept in `_ingest_rejected`.
- A string with a lone UTF-16 surrogate (`"\\ud800"` is valid JSON, but no UTF-8 store can hold it) lands with
  U+FFFD in its place, in a string column and inside JSON alike.
- Column names: a field lands in the column of its name. Column names are compared case-insensitively (DuckDB
  always; Snowflake upper-cases them), so a field whose name differs only by case from a column that is already
  taken (`Color` beside `color`, an undeclared `Name` beside a declared `name`) gets the next free numbered name:
  `Color_2`, `Color_3`, … (Snowflake `COLOR_2`). Names are taken in this order: existing columns, declared fields,
  then undeclared fields sorted. The empty field name lands in column `_`. Each destination records which field a
  renamed column holds, so a field keeps its column on every later run.
- Our own column names (`_ingest_extracted_at`, `_ingest_run_id`, `_ingest_load_id`, `_ingest_rejected`) and the
  dedup helper `__ingest_seq` are reserved, in any case: a source field with one of those names lands in
  `<name>_2` (a source `_ingest_rejected` → column `_ingest_rejected_2`), never dropped and never mixed with ours.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any, Callable, Iterable

import orjson
import pyarrow as pa


def _arrow_without_pandas_detection() -> None:
    """Keep `pa.array(list)` from importing pandas. Every conversion of a Python list asks pyarrow's pandas shim
    whether the list is a pandas object, and the shim's first answer imports pandas (a CDK dependency, so it is
    installed): ~0.18 s of CPU and ~50 MB of RSS in a runner that never hands pyarrow a pandas object. pyarrow has no
    switch for it, so its first, cached look for pandas is made to fail once, here, at import time (before any
    sync thread runs). An explicit conversion (`to_pandas()`) still imports pandas: the shim retries then. Nothing
    changes if pandas is already imported (an in-process connector that uses it)."""
    import sys

    if "pandas" in sys.modules:
        return

    class _NoPandas:
        def find_spec(self, name, path=None, target=None):
            if name == "pandas":
                raise ImportError("pandas is not needed to convert Python lists")
            return None

    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])  # the shim's first look (pyarrow/pandas-shim.pxi, `_have_pandas_internal`), now cached
    finally:
        sys.meta_path.remove(finder)


_arrow_without_pandas_detection()

STRING, INTEGER, NUMBER, BOOLEAN, TIMESTAMP, DATE, JSON = "string", "integer", "number", "boolean", "timestamp", "date", "json"

META_EXTRACTED_AT = "_ingest_extracted_at"
META_RUN_ID = "_ingest_run_id"
META_LOAD_ID = "_ingest_load_id"
META_REJECTED = "_ingest_rejected"
META_COLUMNS = {META_EXTRACTED_AT: TIMESTAMP, META_RUN_ID: STRING, META_LOAD_ID: STRING, META_REJECTED: JSON}
DEDUP_SEQ = "__ingest_seq"  # the arrival-order helper column of a dedup load (Snowflake: __INGEST_SEQ)
RESERVED = {name.lower() for name in (*META_COLUMNS, DEDUP_SEQ)}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
JSON_MAX_INT = 10**38 - 1  # Snowflake VARIANT numbers are NUMBER(38): beyond that, an integer is kept as its digits

ARROW = {
    STRING: pa.string(),
    INTEGER: pa.int64(),
    NUMBER: pa.float64(),
    BOOLEAN: pa.bool_(),
    TIMESTAMP: pa.timestamp("us", tz="UTC"),
    DATE: pa.date32(),
    JSON: pa.string(),  # serialised JSON text; the destination declares the column as JSON/VARIANT
}


def column_type(prop: Any) -> str:
    """One JSON-schema property → a column type. Anything ambiguous is JSON (never lossy)."""
    if not isinstance(prop, dict):
        return JSON
    types = prop.get("type")
    if types is None and ("anyOf" in prop or "oneOf" in prop):
        options = [column_type(p) for p in prop.get("anyOf") or prop.get("oneOf") if p.get("type") != "null"]
        return options[0] if len(set(options)) == 1 else JSON
    if isinstance(types, str):
        types = [types]
    types = [t for t in (types or []) if t != "null"]
    if len(types) != 1:
        # ["integer", "number"] is just a number; anything else mixed is JSON
        return NUMBER if set(types) == {"integer", "number"} else JSON
    t = types[0]
    if t == "string":
        fmt = prop.get("format")
        if fmt == "date-time" or prop.get("airbyte_type") in ("timestamp_with_timezone", "timestamp_without_timezone"):
            return TIMESTAMP
        if fmt == "date":
            return DATE
        return STRING
    return {"integer": INTEGER, "number": NUMBER, "boolean": BOOLEAN}.get(t, JSON)


def columns_from_schema(json_schema: dict | None) -> dict[str, str]:
    props = (json_schema or {}).get("properties") or {}
    return {field_key(name): column_type(prop) for name, prop in props.items()}


def field_key(name: str) -> str:
    """The key a source field goes by from here on: its name, unless that is one of our reserved column names (in
    any case), which becomes `<name>_2` so the source's value lands beside ours instead of replacing or vanishing."""
    return f"{name}_2" if name.lower() in RESERVED else name


def column_name(field: str, taken: Callable[[str], bool]) -> str:
    """The column for a new field: its name, or — when `taken(name)` (the destination compares case-insensitively)
    — the first free `<name>_2`, `<name>_3`, …. The empty name becomes `_` (no SQL dialect takes an empty one)."""
    base = field if field != "" else "_"
    name, i = base, 2
    while taken(name):
        name, i = f"{base}_{i}", i + 1
    return name


def infer_type(values: Iterable[Any]) -> str:
    """Type for a field the schema did not declare, from the values seen in a batch."""
    seen = {type(v) for v in values if v is not None}
    if not seen:
        return STRING
    if seen <= {str}:
        return STRING
    if seen <= {bool}:
        return BOOLEAN
    if seen <= {int}:
        return INTEGER
    if seen <= {int, float}:
        return NUMBER
    if seen <= {dt.datetime}:
        return TIMESTAMP
    return JSON


# ---------------------------------------------------------------- per-value converters (slow path only)

_NO = object()


def utf8_safe(text: str) -> str:
    """`text` with each lone UTF-16 surrogate (valid in a JSON string escape, impossible in UTF-8 — so in any
    warehouse) replaced by U+FFFD; everything else unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _to_string(v):
    if isinstance(v, str):
        return utf8_safe(v)
    if isinstance(v, (dict, list)):
        return _to_json(v)
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    return str(v)


def _in_int64(v: int):
    return v if INT64_MIN <= v <= INT64_MAX else _NO


def _to_integer(v):
    if isinstance(v, bool):
        return _NO
    if isinstance(v, int):
        return _in_int64(v)
    if isinstance(v, float) and v.is_integer():
        return _in_int64(int(v))
    if isinstance(v, str):
        try:
            return _in_int64(int(v.strip()))
        except ValueError:
            return _NO
    return _NO


def _to_number(v):
    if isinstance(v, bool):
        return _NO
    try:
        if isinstance(v, (int, float)):
            return float(v)  # an int beyond a double's range raises OverflowError
        if isinstance(v, str):
            f = float(v.strip())
            # "1e400" parses as inf: a number too large, not an infinity the source meant
            return _NO if math.isinf(f) and "inf" not in v.lower() else f
    except (ValueError, OverflowError):
        return _NO
    return _NO


def _to_boolean(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return _NO


def parse_timestamp(v):
    if isinstance(v, dt.datetime):
        return v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day, tzinfo=dt.timezone.utc)
    if isinstance(v, str):
        text = v.strip()
        # Jira writes offsets without a colon (+0000); Python 3.11 parses that too.
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            return _NO
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    return _NO


def _to_date(v):
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    if isinstance(v, str):
        try:
            return dt.date.fromisoformat(v.strip()[:10])
        except ValueError:
            return _NO
    return _NO


def _to_json(v) -> str:
    """JSON text for any value a connector can produce. orjson first (fast); it refuses integers beyond 64 bits and
    nesting deeper than 255, and writes NaN/Infinity as null — those values take the exact, slower encoder."""
    try:
        text = orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return _json_exact(v)
    # NaN/Infinity became `null`; only a text with a null in it can hide one, so only those are checked.
    if b"null" in text and _has_non_finite(v):
        return _json_exact(v)
    return text.decode()


_NON_FINITE = {"nan": '"NaN"', "inf": '"Infinity"', "-inf": '"-Infinity"'}


_INF, _NINF = float("inf"), float("-inf")


def _has_non_finite(value) -> bool:
    """Whether a NaN or an infinity is anywhere in `value`. Recursive with any(map()) — about as fast as orjson's
    own pass, twice as fast as an explicit stack; a value too deep for recursion takes the exact encoder anyway."""
    try:
        return _non_finite(value)
    except RecursionError:
        return True


def _non_finite(v) -> bool:
    t = type(v)
    if t is float:
        return v != v or v == _INF or v == _NINF
    if t is dict:
        return any(map(_non_finite, v.values()))
    if t is list or t is tuple:
        return any(map(_non_finite, v))
    return False


def _json_scalar(v) -> str:
    if v is None or isinstance(v, bool):
        return "null" if v is None else ("true" if v else "false")
    if isinstance(v, int):
        return str(v) if -JSON_MAX_INT <= v <= JSON_MAX_INT else json.dumps(str(v))
    if isinstance(v, float):
        return json.dumps(v) if math.isfinite(v) else _NON_FINITE[repr(v)]
    if isinstance(v, str):
        return json.dumps(utf8_safe(v))
    if isinstance(v, (dt.datetime, dt.date)):
        return json.dumps(v.isoformat())
    return json.dumps(str(v))


class _Raw(str):
    """Already-encoded JSON punctuation on the encoder's stack."""


def _json_exact(value) -> str:
    """An iterative JSON encoder: any depth (no recursion), big integers exact, NaN/Infinity as strings."""
    out: list[str] = []
    stack: list = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, _Raw):
            out.append(v)
        elif isinstance(v, dict):
            stack.append(_Raw("}"))
            pairs = list(v.items())
            for i in range(len(pairs) - 1, -1, -1):  # pushed last-first, so they pop in order
                key, item = pairs[i]
                stack.append(item)
                stack.append(_Raw(("," if i else "") + json.dumps(utf8_safe(str(key))) + ":"))
            out.append("{")
        elif isinstance(v, (list, tuple)):
            stack.append(_Raw("]"))
            for i, item in enumerate(reversed(v)):
                stack.append(item)
                if i < len(v) - 1:
                    stack.append(_Raw(","))
            out.append("[")
        else:
            out.append(_json_scalar(v))
    return "".join(out)


CONVERTERS = {
    STRING: _to_string,
    INTEGER: _to_integer,
    NUMBER: _to_number,
    BOOLEAN: _to_boolean,
    TIMESTAMP: parse_timestamp,
    DATE: _to_date,
    JSON: _to_json,
}


def _fits(inferred: pa.DataType, ctype: str) -> bool:
    if pa.types.is_null(inferred):
        return True
    if ctype == STRING:
        return pa.types.is_string(inferred) or pa.types.is_large_string(inferred)
    if ctype == INTEGER:
        return pa.types.is_int64(inferred)
    if ctype == NUMBER:
        return pa.types.is_int64(inferred) or pa.types.is_float64(inferred)
    if ctype == BOOLEAN:
        return pa.types.is_boolean(inferred)
    if ctype == TIMESTAMP:
        return pa.types.is_timestamp(inferred)
    if ctype == DATE:
        return pa.types.is_date32(inferred)
    return False


def _convert_column(values: list, ctype: str, rejected: list[dict | None], name: str) -> pa.Array:
    arrow_type = ARROW[ctype]
    if ctype == JSON:
        return pa.array([None if v is None else _to_json(v) for v in values], type=arrow_type)
    # Fast path: let Arrow infer, accept only when the inferred type is a lossless fit. (Asking Arrow for the target
    # type directly is not safe: it silently truncates 1.5 to an int64 1 and turns True into 1.0.)
    try:
        inferred = pa.array(values, from_pandas=False)
    except Exception:  # noqa: BLE001 - any value Arrow cannot infer (too big, too deep, mixed) takes the per-value path
        inferred = None
    if inferred is not None and ctype == TIMESTAMP and (pa.types.is_string(inferred.type) or pa.types.is_large_string(inferred.type)):
        # ISO-8601 strings with an offset (Z, +HH:MM, +HHMM — Jira's style) parse in Arrow's C++ cast, ~20x faster
        # than per value; anything else (naive, date-only, garbage) raises and takes the per-value path below.
        try:
            return inferred.cast(arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if inferred is not None and _fits(inferred.type, ctype):
        # Arrow infers [1.5, True] as doubles; a boolean in a numeric column does not fit.
        if not (ctype in (INTEGER, NUMBER) and any(type(v) is bool for v in values)):
            return inferred.cast(arrow_type)
    convert = CONVERTERS[ctype]
    out = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        c = convert(v)
        if c is _NO:
            out.append(None)
            if rejected[i] is None:
                rejected[i] = {}
            rejected[i][name] = v
        else:
            out.append(c)
    return pa.array(out, type=arrow_type)


def _field_keys(keys: set[str]) -> dict[str, str]:
    """Field key (see field_key) → the record key it reads. A reserved name whose `_2` is also a key of this batch
    takes the next free number, so two source fields never share one column."""
    out: dict[str, str] = {}
    for key in sorted(keys):
        if key.lower() not in RESERVED:
            out[key] = key
    for key in sorted(keys):
        if key.lower() in RESERVED:
            fk, i = field_key(key), 3
            while fk in out or fk in keys:
                fk, i = f"{key}_{i}", i + 1
            out[fk] = key
    return out


def records_to_arrow(
    records: list[dict],
    emitted_at: list[int],
    columns: dict[str, str],
    run_id: str,
    load_id: str,
) -> tuple[pa.Table, dict[str, str]]:
    """Build the Arrow table for one batch.

    `columns` is the target column set, by field key (existing table columns win over the schema's wish, so a type
    change upstream never breaks the table). The Arrow columns are named by field key (the destination maps them to
    column names); a value that does not fit is NULL and kept under its field key in `_ingest_rejected`. Returns the
    table and the fields that were not known before (field key → type), which the destination adds as columns.
    """
    n = len(records)
    keys: set[str] = set()
    for r in records:
        keys.update(r)
    source_of = _field_keys(keys)
    new_columns: dict[str, str] = {}
    names = list(columns) + sorted(f for f in source_of if f not in columns)
    rejected: list[dict | None] = [None] * n
    arrays, fields = [], []
    for name in names:
        key = source_of.get(name, name)
        values = [r.get(key) for r in records]
        ctype = columns.get(name)
        if ctype is None:
            ctype = new_columns[name] = infer_type(values)
        arrays.append(_convert_column(values, ctype, rejected, name))
        fields.append(name)
    arrays.append(pa.array(emitted_at, type=pa.int64()).cast(pa.timestamp("ms", tz="UTC")).cast(ARROW[TIMESTAMP]))
    arrays.append(pa.array([run_id] * n, type=pa.string()))
    arrays.append(pa.array([load_id] * n, type=pa.string()))
    arrays.append(pa.array([None if r is None else _to_json(r) for r in rejected], type=pa.string()))
    fields += [META_EXTRACTED_AT, META_RUN_ID, META_LOAD_ID, META_REJECTED]
    return pa.Table.from_arrays(arrays, names=fields), new_columns
