"""The demo's event stream and the functions its pipelines apply.

Events are small JSON orders, a pure function of their sequence number, so a check can
recompute what every output record must be. Pipeline files name the functions below as
``streamplug_demo.transforms:enrich`` and so on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["enrich", "is_large", "make_event", "only_currency", "split_items"]

CURRENCIES = ("EUR", "USD", "GBP", "JPY")
# Event time advances 5 ms per event, with up to 400 ms of disorder, so a bounded
# out-of-orderness watermark has something real to do.
EVENT_SPACING_MS = 5
MAX_DISORDER_MS = 400
_GOLD_CENTS = 50_000


def make_event(seq: int, base_ts_ms: int) -> dict[str, Any]:
    """Order event number ``seq``; ``base_ts_ms`` is the event time of event 0."""
    disorder = (seq * 7919) % (MAX_DISORDER_MS + 1)
    return {
        "id": seq,
        "customer": f"c{(seq * 31) % 997:03d}",
        "amount_cents": (seq * 104_729) % 100_000,
        "currency": CURRENCIES[seq % len(CURRENCIES)],
        "items": 1 + seq % 3,
        "ts": base_ts_ms + seq * EVENT_SPACING_MS - disorder,
    }


def enrich(event: dict[str, Any]) -> dict[str, Any]:
    """The demo's map step: amounts in units, a customer tier, and the event kept whole."""
    cents = int(event["amount_cents"])
    return {
        "id": event["id"],
        "customer": event["customer"],
        "amount": round(cents / 100, 2),
        "currency": event["currency"],
        "tier": "gold" if cents >= _GOLD_CENTS else "standard",
        "ts": event["ts"],
    }


def is_large(event: dict[str, Any]) -> bool:
    """A filter step: orders of 500.00 or more (in the order's currency)."""
    return int(event.get("amount_cents", round(float(event.get("amount", 0)) * 100))) >= _GOLD_CENTS


def split_items(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A flat_map step: one record per item of the order."""
    count = int(event.get("items", 1))
    for n in range(count):
        yield {"order": event["id"], "item": n, "customer": event["customer"], "ts": event["ts"]}


def only_currency(currency: str = "EUR") -> Any:
    """A transform factory: ``filter = "streamplug_demo.transforms:only_currency"`` with
    ``options = { currency = "USD" }`` builds a filter keeping orders in that currency."""

    def keep(event: dict[str, Any]) -> bool:
        return bool(event.get("currency") == currency)

    keep.__name__ = f"only_{currency.lower()}"
    return keep
