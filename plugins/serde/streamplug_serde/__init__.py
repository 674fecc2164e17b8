"""streamplug-serde: the built-in serialization formats of streamplug.

Every schema here is a plain ``streamplug.api.serde`` ``SerializationSchema`` or
``DeserializationSchema``, so it plugs into any source or sink that takes one (the Kafka
source's value-only and key/value deserialization, the Kafka sink's record serialization
schema). Deserializers raise ``streamplug.api.serde.DeserializationError`` for every bad
record, never another exception type and never a silent ``None``.
"""

from streamplug_serde._util import BatchDeserializationError, SerializationError
from streamplug_serde.avro_format import AvroDeserializationSchema, AvroSerializationSchema
from streamplug_serde.avro_registry import (
    ConfluentAvroDeserializationSchema,
    ConfluentAvroSerializationSchema,
)
from streamplug_serde.basic import BytesSchema, SimpleStringSchema
from streamplug_serde.confluent import (
    ConfluentDeserializerSchema,
    ConfluentSerializerSchema,
    to_confluent_deserializer,
    to_confluent_serializer,
)
from streamplug_serde.csv_format import CsvRowDeserializationSchema, CsvRowSerializationSchema
from streamplug_serde.json_format import JsonDeserializationSchema, JsonSerializationSchema
from streamplug_serde.protobuf_format import (
    ProtobufDeserializationSchema,
    ProtobufSerializationSchema,
)
from streamplug_serde.protobuf_registry import (
    ConfluentProtobufDeserializationSchema,
    ConfluentProtobufSerializationSchema,
)
from streamplug_serde.registry import SUBJECT_NAME_STRATEGIES, RegistrySettings, subject_name

__all__ = [
    "SUBJECT_NAME_STRATEGIES",
    "AvroDeserializationSchema",
    "AvroSerializationSchema",
    "BatchDeserializationError",
    "BytesSchema",
    "ConfluentAvroDeserializationSchema",
    "ConfluentAvroSerializationSchema",
    "ConfluentDeserializerSchema",
    "ConfluentProtobufDeserializationSchema",
    "ConfluentProtobufSerializationSchema",
    "ConfluentSerializerSchema",
    "CsvRowDeserializationSchema",
    "CsvRowSerializationSchema",
    "JsonDeserializationSchema",
    "JsonSerializationSchema",
    "ProtobufDeserializationSchema",
    "ProtobufSerializationSchema",
    "RegistrySettings",
    "SerializationError",
    "SimpleStringSchema",
    "subject_name",
    "to_confluent_deserializer",
    "to_confluent_serializer",
]
