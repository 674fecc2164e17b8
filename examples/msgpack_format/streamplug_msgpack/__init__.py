"""An example third-party streamplug plugin: the MessagePack format (``msgpack``)."""

from streamplug_msgpack.schemas import MsgPackDeserializationSchema, MsgPackSerializationSchema

__all__ = ["MsgPackDeserializationSchema", "MsgPackSerializationSchema"]
