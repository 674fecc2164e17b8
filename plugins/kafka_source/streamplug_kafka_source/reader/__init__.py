"""The source reader, its bad-record policy and the dead-letter producer."""

from streamplug_kafka_source.reader.bad_records import BadRecordAction, BadRecordPolicy
from streamplug_kafka_source.reader.reader import KafkaSourceReader

__all__ = ["BadRecordAction", "BadRecordPolicy", "KafkaSourceReader"]
