"""The demo's closing check catches what it claims to: missing, duplicated and wrong output
records (on the mock cluster), and it reads read_committed, so records of aborted
transactions do not count (on real Kafka: the mock does not filter them reliably)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer

pytestmark = pytest.mark.e2e

BASE_TS = 1_000_000


def _write(bootstrap: str, topic: str, values: list[dict[str, Any]], **conf: Any) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, **conf})
    for value in values:
        producer.produce(topic, json.dumps(value).encode())
    assert producer.flush(10) == 0


def test_the_check_counts_missing_duplicated_and_wrong_records(mock_cluster: Any) -> None:
    from streamplug_demo import check_output, enrich, make_event

    mock_cluster.create_topic("out", 2)
    good = [enrich(make_event(seq, BASE_TS)) for seq in range(100)]
    wrong = dict(good[7], amount=-1.0)
    # 3 missing (97, 98, 99), 5 duplicated once each, record 7 wrong.
    records = [*good[:7], wrong, *good[8:97], *good[:5]]
    _write(mock_cluster.bootstrap_servers, "out", records)
    check = check_output(mock_cluster.bootstrap_servers, "out", 100, BASE_TS)
    assert (check.expected, check.output_records) == (100, 102)
    assert (check.missing, check.duplicates, check.wrong) == (3, 5, 1)
    assert not check.passed


@pytest.mark.integration
def test_the_check_passes_exact_output_and_ignores_aborted_transactions(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    from streamplug_demo import check_output, enrich, make_event

    out = topic_factory(partitions=1, name="demo-check")
    bootstrap = kafka_bootstrap
    good = [enrich(make_event(seq, BASE_TS)) for seq in range(50)]
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{out}-txn"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for value in good[:10]:  # duplicates, never committed
        producer.produce(out, json.dumps(value).encode())
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    for value in good:
        producer.produce(out, json.dumps(value).encode())
    producer.commit_transaction(30)

    check = check_output(bootstrap, out, 50, BASE_TS)
    assert check.passed, check
    assert check.output_records == 50
