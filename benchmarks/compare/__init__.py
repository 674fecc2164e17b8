"""Side-by-side benchmark: hand-written confluent-kafka loops, streamplug, Quix Streams,
Bytewax, Arroyo, Faust and Flink's own Java Kafka connector on one real Kafka broker.
Run it as ``python benchmarks/compare.py`` (``--help`` for the options)."""
