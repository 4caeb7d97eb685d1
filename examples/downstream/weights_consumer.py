#!/usr/bin/env python3
"""A downstream service that follows closedloop's weight-update topic.

It uses nothing of closedloop but the topic name and the published Avro schema
(schemas/WeightConfig.avsc): the standard confluent-kafka client and fastavro.
It prints one line per new CHAMPION (model, version, weights) — what a scorer or a
CRM sync job would apply.

Framing (SPEC §3): without a schema registry, records use Avro single-object encoding
(0xC3 0x01, 8-byte little-endian CRC-64-AVRO fingerprint of the schema's Parsing
Canonical Form, Avro binary); with a registry, the Confluent wire format (0x00, 4-byte
big-endian schema id, Avro binary). Both are handled here; a record whose fingerprint
is not that of our schema is reported and skipped, never guessed at.

Usage:
  weights_consumer.py --brokers 127.0.0.1:9092 [--topic closedloop.weights]
                      [--schema schemas/WeightConfig.avsc] [--exit-after N] [--timeout S]
"""
import argparse
import io
import json
import struct
import sys

import fastavro
from confluent_kafka import Consumer, KafkaError


def load_schema(path):
    with open(path) as f:
        raw = json.load(f)
    parsed = fastavro.parse_schema(raw)
    fp = fastavro.schema.fingerprint(fastavro.schema.to_parsing_canonical_form(raw), "CRC-64-AVRO")
    return parsed, bytes.fromhex(fp)


def decode(value, schema, fingerprint):
    """Returns the record, or raises ValueError saying why it cannot be read."""
    if len(value) >= 10 and value[:2] == b"\xc3\x01":
        if value[2:10] != fingerprint:
            raise ValueError("written with another schema (fingerprint %s)" % value[2:10].hex())
        body = value[10:]
    elif len(value) >= 5 and value[0] == 0:
        # Confluent framing: a production consumer would fetch the writer schema by id
        # from the registry; this example assumes the registry holds our schema.
        body = value[5:]
    else:
        raise ValueError("unknown framing (first byte 0x%02x)" % (value[0] if value else 0))
    return fastavro.schemaless_reader(io.BytesIO(body), schema)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--topic", default="closedloop.weights")
    ap.add_argument("--schema", default="schemas/WeightConfig.avsc")
    ap.add_argument("--group", default=None, help="consumer group (default: none, read from the start)")
    ap.add_argument("--exit-after", type=int, default=0, help="exit after N champions (0: run forever)")
    ap.add_argument("--timeout", type=float, default=0, help="exit with status 1 after S seconds without reaching --exit-after")
    args = ap.parse_args()

    schema, fingerprint = load_schema(args.schema)
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group or "weights-consumer-example",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": bool(args.group),
    })
    consumer.subscribe([args.topic])
    latest = {}  # model -> version of the champion printed last
    seen = 0
    import time
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while True:
            if deadline and time.monotonic() > deadline:
                print("timed out after %.0fs with %d champion(s)" % (args.timeout, seen), file=sys.stderr)
                return 1
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    print("kafka error: %s" % msg.error(), file=sys.stderr)
                continue
            if msg.value() is None:
                continue  # tombstone: a compacted-away key
            try:
                rec = decode(msg.value(), schema, fingerprint)
            except Exception as e:  # hostile input: report and go on
                print("skipping %s[%d]@%d: %s" % (msg.topic(), msg.partition(), msg.offset(), e), file=sys.stderr)
                continue
            if rec["status"] != "CHAMPION":
                continue
            if latest.get(rec["model"], -1) >= rec["version"]:
                continue
            latest[rec["model"]] = rec["version"]
            weights = " ".join("%s=%.4f" % kv for kv in sorted(rec["weights"].items()))
            print("champion model=%s version=%d %s" % (rec["model"], rec["version"], weights), flush=True)
            seen += 1
            if args.exit_after and seen >= args.exit_after:
                return 0
    finally:
        consumer.close()


if __name__ == "__main__":
    sys.exit(main())
