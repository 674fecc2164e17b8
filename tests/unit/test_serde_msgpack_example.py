"""The example third-party format plugin (examples/msgpack_format) is found through its
entry point, used by name, and behaves like a built-in format."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamplug.api.serde import DeserializationError
from streamplug.plugins import build_plugin_host

try:
    import streamplug_msgpack
except ImportError:  # pragma: no cover - depends on the environment
    # Under tox (and CI) the example is installed; a missing install there is a failure.
    if os.environ.get("TOX_ENV_NAME") or os.environ.get("CI"):
        raise
    pytest.skip(
        "examples/msgpack_format is not installed: pip install -e examples/msgpack_format",
        allow_module_level=True,
    )


def test_discovered_through_its_entry_point() -> None:
    host = build_plugin_host(autoload=True)
    assert "msgpack" in host.names("format")
    info = next(i for i in host.plugin_infos() if i.name == "msgpack")
    assert info.distribution == "streamplug-msgpack"
    assert info.names == {"format": ["msgpack"]}
    # Beside every built-in format, with no name clash.
    assert {"json", "avro", "protobuf", "csv"} <= set(host.names("format"))


def test_disabled_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPLUG_DISABLED_PLUGINS", "msgpack")
    assert "msgpack" not in build_plugin_host(autoload=True).names("format")


def test_listed_by_streamplug_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    from streamplug.cli import main

    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("streamplug-msgpack") :]
    assert "msgpack" in block.splitlines()[1]
    serde = out[out.index("streamplug-serde") :].splitlines()[1]
    for name in ("avro", "avro-confluent", "bytes", "csv", "json", "protobuf", "string"):
        assert name in serde


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text() | st.integers(min_value=0, max_value=1000), children, max_size=4
        )
    ),
    max_leaves=15,
)


@settings(deadline=None)
@given(values=st.lists(msgpack_values, max_size=8))
def test_roundtrip_by_name(values: list[Any]) -> None:
    spec = build_plugin_host(autoload=True).format("msgpack")
    assert spec.serializer is not None and spec.deserializer is not None
    ser, deser = spec.serializer(), spec.deserializer()
    encoded = [ser.serialize(v) for v in values]
    assert [deser.deserialize(b) for b in encoded] == values
    assert deser.deserialize_batch(encoded) == values


@pytest.mark.parametrize(
    "data",
    [
        b"",  # no value at all
        b"\x92\x01",  # array of two with one element
        b"\x01\x02",  # two values in one record
        b"\xc1",  # the never-used type byte
        b"\xa2\xff\xfe",  # str with invalid UTF-8
        b"\x81\x90\x01",  # map with an (unhashable) array key
    ],
)
def test_malformed_input_raises_deserialization_error(data: bytes) -> None:
    deser = streamplug_msgpack.MsgPackDeserializationSchema()
    with pytest.raises(DeserializationError) as info:
        deser.deserialize(data)
    assert info.value.format == "msgpack" and info.value.data == data
    with pytest.raises(DeserializationError):
        deser.deserialize_batch([b"\x01", data])


@settings(deadline=None, max_examples=200)
@given(data=st.binary(max_size=48))
def test_arbitrary_bytes_never_raise_another_error_type(data: bytes) -> None:
    deser = streamplug_msgpack.MsgPackDeserializationSchema()
    try:
        value = deser.deserialize(data)
    except DeserializationError:
        return
    assert deser.deserialize_batch([data]) == [value]


def test_serializer_recovers_after_a_bad_element() -> None:
    ser = streamplug_msgpack.MsgPackSerializationSchema()
    with pytest.raises(ValueError, match="msgpack"):
        ser.serialize({1j})
    assert ser.serialize([1]) == b"\x91\x01"
