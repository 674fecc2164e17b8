"""Encode and decode throughput of every streamplug-serde format against calling the
library underneath directly, side by side.

For each format, 100,000 records (configurable) are serialized one at a time through
``SerializationSchema.serialize`` and deserialized through ``deserialize_batch`` (the path
KafkaSource uses), and the same work is done by hand with the library: orjson/json,
fastavro's schemaless writer and reader, protobuf's SerializeToString/FromString, the
csv module, str.encode/bytes.decode, msgpack. The ratio is streamplug's throughput over
the direct one (1.00 = no overhead). For the registry formats the comparison is
confluent_kafka's own registry serializers (on its in-memory registry client) as well.

    python benchmarks/bench_serde.py [--records N] [--repeat R] [--json out.json]

Throughput is records per CPU-second of the benchmark process by default (``--clock cpu``):
on a shared machine other processes' load changes elapsed time far more than CPU time.
Each figure is the best of ``--repeat`` runs (default 3), streamplug and direct measured in
turn, so a noisy neighbour on a shared machine costs a repeat, not the result.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import platform
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import fastavro

from streamplug_serde import (
    AvroDeserializationSchema,
    AvroSerializationSchema,
    BytesSchema,
    ConfluentAvroDeserializationSchema,
    ConfluentAvroSerializationSchema,
    ConfluentProtobufDeserializationSchema,
    ConfluentProtobufSerializationSchema,
    CsvRowDeserializationSchema,
    CsvRowSerializationSchema,
    JsonDeserializationSchema,
    JsonSerializationSchema,
    ProtobufDeserializationSchema,
    ProtobufSerializationSchema,
    SimpleStringSchema,
)
from streamplug_serde.testing import Money, Order

AVRO_SCHEMA = {
    "type": "record",
    "name": "Event",
    "namespace": "bench",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "user", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "ok", "type": "boolean"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ],
}
CSV_FIELDS = ["id", "user", "amount", "ok", "tags"]


def make_events(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "user": f"user-{i % 1000}",
            "amount": i * 0.25,
            "ok": i % 2 == 0,
            "tags": ["a", "bb"] if i % 3 else [],
        }
        for i in range(n)
    ]


def make_orders(n: int) -> list[Any]:
    return [
        Order(
            id=f"o-{i}",
            quantity=i % 50,
            price=Money(currency="EUR", units=i),
            tags=["a"] if i % 2 else [],
            paid=bool(i % 3),
        )
        for i in range(n)
    ]


CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}
_clock = time.process_time


def best_rates(
    ours: Callable[[], Any], direct: Callable[[], Any], count: int, repeat: int
) -> tuple[float, float]:
    """Best throughput of each side, measured alternately so that a load change on a shared
    machine hits both sides alike instead of whichever ran second."""
    best_ours = best_direct = float("inf")
    for _ in range(repeat):
        for fn, is_ours in ((ours, True), (direct, False)):
            start = _clock()
            fn()
            elapsed = _clock() - start
            if is_ours:
                best_ours = min(best_ours, elapsed)
            else:
                best_direct = min(best_direct, elapsed)
    return count / best_ours, count / best_direct


class Case:
    """One format: streamplug's schemas and the direct calls doing the same work."""

    def __init__(
        self,
        name: str,
        elements: Sequence[Any],
        ser: Any,
        deser: Any,
        direct_encode: Callable[[Any], bytes],
        direct_decode_batch: Callable[[list[bytes]], list[Any]],
        baseline: str,
    ) -> None:
        self.name = name
        self.elements = elements
        self.ser = ser
        self.deser = deser
        self.direct_encode = direct_encode
        self.direct_decode_batch = direct_decode_batch
        self.baseline = baseline

    def run(self, repeat: int) -> dict[str, Any]:
        elements = self.elements
        self.ser.open()
        self.deser.open()
        serialize = self.ser.serialize
        encoded = [serialize(e) for e in elements]
        direct_encoded = [self.direct_encode(e) for e in elements]
        # Both sides must produce bytes the other side reads, or the comparison is moot.
        assert self.deser.deserialize_batch(direct_encoded[:100]) == self.direct_decode_batch(
            encoded[:100]
        ), self.name
        direct = self.direct_encode
        n = len(elements)
        enc_ours, enc_direct = best_rates(
            lambda: [serialize(e) for e in elements],
            lambda: [direct(e) for e in elements],
            n,
            repeat,
        )
        dec_ours, dec_direct = best_rates(
            lambda: self.deser.deserialize_batch(encoded),
            lambda: self.direct_decode_batch(encoded),
            n,
            repeat,
        )
        return {
            "format": self.name,
            "baseline": self.baseline,
            "encode_streamplug": enc_ours,
            "encode_direct": enc_direct,
            "decode_streamplug": dec_ours,
            "decode_direct": dec_direct,
            "bytes_per_record": sum(map(len, encoded)) / n,
        }


def cases(n: int) -> list[Case]:
    events = make_events(n)
    orders = make_orders(n)
    out: list[Case] = []

    out.append(
        Case("bytes", [b"x" * 100] * n, BytesSchema(), BytesSchema(), bytes, list, "bytes()")
    )
    texts = [f"event {i}: caf\u00e9" for i in range(n)]
    out.append(
        Case(
            "string",
            texts,
            SimpleStringSchema(),
            SimpleStringSchema(),
            lambda s: s.encode("utf-8"),
            lambda ms: [m.decode("utf-8") for m in ms],
            "str.encode / bytes.decode",
        )
    )
    try:
        import orjson

        out.append(
            Case(
                "json (orjson)",
                events,
                JsonSerializationSchema(),
                JsonDeserializationSchema(),
                orjson.dumps,
                lambda ms: [orjson.loads(m) for m in ms],
                "orjson.dumps / orjson.loads",
            )
        )
    except ImportError:
        pass
    out.append(
        Case(
            "json (stdlib)",
            events,
            JsonSerializationSchema(use_orjson=False),
            JsonDeserializationSchema(use_orjson=False),
            lambda e: json.dumps(e, separators=(",", ":")).encode(),
            lambda ms: [json.loads(m) for m in ms],
            "json.dumps / json.loads",
        )
    )
    schema = {"type": "object", "required": ["id", "user"]}
    out.append(
        Case(
            "json + JSON Schema",
            events,
            JsonSerializationSchema(),
            JsonDeserializationSchema(schema),
            JsonSerializationSchema()._dumps,
            JsonDeserializationSchema().deserialize_batch,
            "the same without validation",
        )
    )

    parsed = fastavro.parse_schema(AVRO_SCHEMA)

    def avro_encode(e: Any) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, e)
        return buf.getvalue()

    def avro_decode(ms: list[bytes]) -> list[Any]:
        return [fastavro.schemaless_reader(io.BytesIO(m), parsed, None) for m in ms]

    out.append(
        Case(
            "avro",
            events,
            AvroSerializationSchema(AVRO_SCHEMA),
            AvroDeserializationSchema(AVRO_SCHEMA),
            avro_encode,
            avro_decode,
            "fastavro schemaless_writer / schemaless_reader",
        )
    )

    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    url = f"mock://bench-{uuid.uuid4().hex}"
    client = SchemaRegistryClient.new_client({"url": url})
    ctx = SerializationContext("bench", MessageField.VALUE)
    c_avro_ser = AvroSerializer(client, json.dumps(AVRO_SCHEMA))
    c_avro_deser = AvroDeserializer(client)
    out.append(
        Case(
            "avro-confluent",
            events,
            ConfluentAvroSerializationSchema(
                AVRO_SCHEMA, schema_registry_client=client, topic="bench"
            ),
            ConfluentAvroDeserializationSchema(schema_registry_client=client),
            lambda e: c_avro_ser(e, ctx),
            lambda ms: [c_avro_deser(m, ctx) for m in ms],
            "confluent_kafka AvroSerializer / AvroDeserializer",
        )
    )

    out.append(
        Case(
            "protobuf",
            orders,
            ProtobufSerializationSchema(Order),
            ProtobufDeserializationSchema(Order),
            lambda o: o.SerializeToString(),
            lambda ms: [Order.FromString(m) for m in ms],
            "SerializeToString / FromString",
        )
    )
    conf = {"use.deprecated.format": False}
    c_pb_ser = ProtobufSerializer(Order, client, conf)
    c_pb_deser = ProtobufDeserializer(Order, conf)
    out.append(
        Case(
            "protobuf-confluent",
            orders,
            ConfluentProtobufSerializationSchema(
                Order, schema_registry_client=client, topic="bench"
            ),
            ConfluentProtobufDeserializationSchema(Order, schema_registry_client=client),
            lambda o: c_pb_ser(o, ctx),
            lambda ms: [c_pb_deser(m, ctx) for m in ms],
            "confluent_kafka ProtobufSerializer / ProtobufDeserializer",
        )
    )

    rows = [[str(e[f]) for f in CSV_FIELDS] for e in events]

    def csv_encode(row: list[str]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(row)
        return buf.getvalue().encode()

    def csv_decode(ms: list[bytes]) -> list[Any]:
        return [next(csv.reader([m.decode()])) for m in ms]

    out.append(
        Case(
            "csv",
            rows,
            CsvRowSerializationSchema(),
            CsvRowDeserializationSchema(),
            csv_encode,
            csv_decode,
            "csv.writer / csv.reader per record",
        )
    )
    try:
        import msgpack

        from streamplug_msgpack import MsgPackDeserializationSchema, MsgPackSerializationSchema

        out.append(
            Case(
                "msgpack (example plugin)",
                events,
                MsgPackSerializationSchema(),
                MsgPackDeserializationSchema(),
                lambda e: msgpack.packb(e, use_bin_type=True),
                lambda ms: [msgpack.unpackb(m, raw=False, strict_map_key=False) for m in ms],
                "msgpack.packb / unpackb",
            )
        )
    except ImportError:
        pass
    return out


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in (
        "streamplug-serde",
        "orjson",
        "fastavro",
        "protobuf",
        "confluent-kafka",
        "msgpack",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    try:
        from google.protobuf.internal import api_implementation

        out["protobuf backend"] = api_implementation.Type()
    except ImportError:
        pass
    return out


def fmt_rate(rate: float) -> str:
    return f"{rate / 1000:,.0f}k/s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--only", help="run only formats whose name contains this")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="cpu (default): records per CPU-second of this process, steady on a busy shared "
        "machine; wall: records per elapsed second",
    )
    args = parser.parse_args(argv)
    global _clock
    _clock = CLOCKS[args.clock]

    info = versions()
    print(
        f"{args.records:,} records per run, best of {args.repeat}, {args.clock} clock; "
        + ", ".join(f"{k} {v}" for k, v in info.items())
    )
    header = (
        f"{'format':<26}{'encode ours':>13}{'direct':>13}{'ratio':>7}"
        f"{'decode ours':>14}{'direct':>13}{'ratio':>7}{'B/rec':>7}  baseline"
    )
    print(header)
    print("-" * len(header))
    results = []
    for case in cases(args.records):
        if args.only and args.only not in case.name:
            continue
        r = case.run(args.repeat)
        results.append(r)
        print(
            f"{r['format']:<26}"
            f"{fmt_rate(r['encode_streamplug']):>13}{fmt_rate(r['encode_direct']):>13}"
            f"{r['encode_streamplug'] / r['encode_direct']:>7.2f}"
            f"{fmt_rate(r['decode_streamplug']):>14}{fmt_rate(r['decode_direct']):>13}"
            f"{r['decode_streamplug'] / r['decode_direct']:>7.2f}"
            f"{r['bytes_per_record']:>7.0f}  {r['baseline']}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "records": args.records,
                    "repeat": args.repeat,
                    "clock": args.clock,
                    "versions": info,
                    "results": results,
                },
                fh,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
