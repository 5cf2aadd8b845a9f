"""truck_pricing's input: shipment rows (from the warehouse or a CSV file) as `Lane`s, the unit the API prices.

Columns are matched by name (COLUMN_ALIASES, first match wins), equipment names mapped to the API's transport types
(EQUIPMENT), ZIPs stored as numbers get their leading zeros back. A row that cannot be priced as given still becomes
a Lane, with `problem` saying why (it becomes an ERROR row without an API call): reading inputs never fails a load.
Rows for the same lane and pickup date are priced once (`merge_lanes`), their shipment ids kept together.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from .values import json_value, parse_datetime

TRANSPORT_TYPES = ("VAN", "REEFER", "FLATBED", "HOTSHOT")
EARLIEST_PICKUP = dt.date(2015, 1, 1)  # the API refuses earlier pickup dates

# Input column (normalized: lowercase, snake_case) -> names accepted for it, first match wins.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "shipment_id": ("shipment_id", "load_id", "id", "pro_number", "reference"),
    "pickup_date": ("pickup_date", "pickup_datetime", "pickup_at", "pickup_time", "ship_date", "pickupdatetime"),
    "transport_type": ("transport_type", "equipment_type", "equipment", "transporttype", "mode"),
    "origin_city": ("origin_city", "orig_city", "from_city"),
    "origin_state": ("origin_state", "orig_state", "from_state"),
    "origin_zip": ("origin_zip", "origin_postal_code", "origin_zipcode", "orig_zip", "from_zip"),
    "origin_country": ("origin_country", "orig_country", "from_country"),
    "destination_city": ("destination_city", "dest_city", "to_city"),
    "destination_state": ("destination_state", "dest_state", "to_state"),
    "destination_zip": ("destination_zip", "destination_postal_code", "destination_zipcode", "dest_zip", "to_zip"),
    "destination_country": ("destination_country", "dest_country", "to_country"),
    "commodity": ("commodity",),
    "currency": ("currency",),
}
EQUIPMENT = {
    "VAN": "VAN", "V": "VAN", "DRY VAN": "VAN", "DRYVAN": "VAN", "DRY_VAN": "VAN", "53' VAN": "VAN",
    "REEFER": "REEFER", "R": "REEFER", "REFRIGERATED": "REEFER", "TEMP CONTROLLED": "REEFER",
    "FLATBED": "FLATBED", "F": "FLATBED", "FLAT": "FLATBED", "FLAT BED": "FLATBED", "FB": "FLATBED",
    "HOTSHOT": "HOTSHOT", "HOT SHOT": "HOTSHOT", "HS": "HOTSHOT",
}


@dataclass
class Lane:
    lane_id: str
    pickup_date: dt.date | None
    pickup_datetime: str | None
    transport_type: str | None
    origin: dict
    destination: dict
    commodity: str | None = None
    currency: str | None = None
    shipment_ids: list[str] = field(default_factory=list)
    problem: str | None = None  # why the lane cannot be priced (it becomes an ERROR row without an API call)

    @property
    def tag(self) -> str:
        return "ingest-" + hashlib.sha1(self.lane_id.encode()).hexdigest()[:16]

    def request(self, currency: str | None) -> dict:
        body = {
            "pickupDateTime": self.pickup_datetime,
            "transportType": self.transport_type,
            "stops": [{"order": 0, **_stop(self.origin)}, {"order": 1, **_stop(self.destination)}],
            "tag": self.tag,
        }
        if self.commodity:
            body["commodity"] = self.commodity
        if self.currency or currency:
            body["currency"] = self.currency or currency
        return body

    def columns(self) -> dict:
        return {
            "lane_id": self.lane_id,
            "pickup_date": self.pickup_date.isoformat() if self.pickup_date else None,
            "pickup_datetime": self.pickup_datetime,
            "transport_type": self.transport_type,
            **{f"origin_{k}": self.origin.get(k) for k in ("country", "state", "city", "zip")},
            **{f"destination_{k}": self.destination.get(k) for k in ("country", "state", "city", "zip")},
            "commodity": self.commodity,
            "tag": self.tag,
            "shipment_ids": list(self.shipment_ids) or None,
        }


def _stop(place: dict) -> dict:
    return {k: place[k] for k in ("country", "city", "state", "zip") if place.get(k)}


def _pick(row: dict, column: str) -> Any:
    for name in COLUMN_ALIASES[column]:
        if name in row and row[name] not in (None, ""):
            return row[name]
    return None


def _text(value: Any) -> str | None:
    value = json_value(value)
    if value is None:
        return None
    text = re.sub(r"\s+", " ", str(value)).strip()
    return text or None


def _zip(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    if re.fullmatch(r"\d{1,4}(\.0)?", text):  # a ZIP stored as a number lost its leading zeros
        text = text.split(".")[0].zfill(5)
    elif re.fullmatch(r"\d{5}\.0", text):
        text = text[:5]
    return text.upper()


def lane_from_row(row: dict) -> Lane:
    """One input row → a Lane (never raises: what is wrong goes to `problem`)."""
    problems = []
    raw_pickup = _pick(row, "pickup_date")
    pickup = parse_datetime(raw_pickup)
    pickup_date = pickup.date() if pickup else None
    has_time = isinstance(raw_pickup, dt.datetime) or (isinstance(raw_pickup, str) and re.search(r"\d[T ]\d{1,2}:\d{2}", raw_pickup))
    pickup_datetime = None
    if pickup is not None:
        pickup_datetime = (pickup.astimezone(dt.timezone.utc) if has_time else dt.datetime.combine(pickup_date, dt.time(), dt.timezone.utc)) \
            .strftime("%Y-%m-%dT%H:%M:%SZ")
    if raw_pickup is None:
        problems.append("pickup_date is missing")
    elif pickup_date is None:
        problems.append(f"pickup_date {_text(raw_pickup)!r} is not a date")
    elif pickup_date < EARLIEST_PICKUP:
        problems.append(f"pickup_date {pickup_date} is before {EARLIEST_PICKUP}, the earliest the API prices")
    raw_type = _text(_pick(row, "transport_type"))
    transport = EQUIPMENT.get(raw_type.upper()) if raw_type else None
    if raw_type is None:
        problems.append("transport_type is missing")
    elif transport is None:
        problems.append(f"transport_type {raw_type!r} is not one of {', '.join(TRANSPORT_TYPES)}")
        transport = raw_type.upper()
    places = {}
    for end in ("origin", "destination"):
        place = {
            "country": (_text(_pick(row, f"{end}_country")) or "US").upper(),
            "state": (_text(_pick(row, f"{end}_state")) or "").upper() or None,
            "city": _text(_pick(row, f"{end}_city")),
            "zip": _zip(_pick(row, f"{end}_zip")),
        }
        missing = [k for k in ("city", "state") if not place[k]]
        if missing:
            problems.append(f"{end} {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing")
        places[end] = place
    date_part = pickup_date.isoformat() if pickup_date else f"?{_text(raw_pickup) or ''}"
    lane_id = "|".join([date_part, transport or "?", _place_key(places["origin"]), _place_key(places["destination"])])
    shipment = _text(_pick(row, "shipment_id"))
    currency = _text(_pick(row, "currency"))
    return Lane(
        lane_id=lane_id, pickup_date=pickup_date, pickup_datetime=pickup_datetime, transport_type=transport,
        origin=places["origin"], destination=places["destination"], commodity=_text(_pick(row, "commodity")),
        currency=currency.upper() if currency else None, shipment_ids=[shipment] if shipment else [],
        problem="; ".join(problems) or None,
    )


def _place_key(place: dict) -> str:
    return "-".join((place.get(k) or "").upper() for k in ("country", "state", "city", "zip"))


def merge_lanes(lanes: list[Lane]) -> list[Lane]:
    """Rows for the same lane and pickup date are priced once; their shipment ids are kept together."""
    by_id: dict[str, Lane] = {}
    for lane in lanes:
        seen = by_id.get(lane.lane_id)
        if seen is None:
            by_id[lane.lane_id] = lane
        else:
            seen.shipment_ids.extend(s for s in lane.shipment_ids if s not in seen.shipment_ids)
    return list(by_id.values())
