"""The Redshift emulator's error translation and protocol helpers, on values (no server)."""

from __future__ import annotations

from local.redshift import protocol
from local.redshift.errors import RedshiftError
from local.redshift.gate import GateError
from local.redshift.server import map_backend_error, raise_sql


def test_serialization_failures_are_redshifts_1023() -> None:
    fields = map_backend_error(
        {"S": "ERROR", "V": "ERROR", "C": "40001", "M": "could not serialize access due to read/write dependencies"},
        backend_pid=4711,
    )
    assert fields["M"] == "1023"
    assert fields["D"].startswith("Serializable isolation violation on table - ")
    assert "(pid:4711)" in fields["D"] and "read/write dependencies" in fields["D"]


def test_byte_width_checks_are_value_too_long() -> None:
    varchar = {
        "S": "ERROR",
        "C": "23514",
        "M": 'new row for relation "t" violates check constraint',
        "n": "redshift_varchar_64_2",
    }
    char = {**varchar, "n": "redshift_char_3_1"}
    assert map_backend_error(varchar, 1)["M"] == "value too long for type character varying(64)"
    assert map_backend_error(varchar, 1)["C"] == "22001"
    assert map_backend_error(char, 1)["M"] == "value too long for type character(3)"
    other = {**varchar, "n": "users_check"}  # a constraint that is not the emulator's is left alone
    assert map_backend_error(other, 1) == other


def test_raise_sql_names_the_fields_and_infos() -> None:
    err = GateError(
        "m'1", construct="x", sqlstate="0A000", detail="d", hint="h", infos=('Function "f()" not supported.',)
    )
    text = raise_sql(err)
    assert text.startswith("DO $redshift_emulator$ BEGIN RAISE INFO '%', 'Function \"f()\" not supported.';")
    assert "MESSAGE = 'm''1', ERRCODE = '0A000', DETAIL = 'd', HINT = 'h'" in text
    tagged = raise_sql(RedshiftError("holds $redshift_emulator$"))
    assert tagged.count("$redshift_emulator$") == 1  # only inside the message: the body uses another tag


def test_protocol_messages_round_trip() -> None:
    parse = protocol.Parse("s1", "select $1", (23,))
    encoded = parse.encode()
    assert encoded[:1] == b"P" and protocol.Parse.decode(encoded[5:]) == parse
    fields = {"S": "ERROR", "C": "XX000", "M": "é"}
    assert protocol.parse_fields(protocol.build_fields(fields)) == fields
    assert protocol.startup_parameters(b"user\x00awsuser\x00database\x00dev\x00\x00") == {
        "user": "awsuser",
        "database": "dev",
    }


def test_under_snapshot_a_write_conflict_is_redshifts_conflict_error() -> None:
    fields = {"S": "ERROR", "C": "40001", "M": "could not serialize access due to concurrent update"}
    assert map_backend_error(fields, 1, "snapshot")["M"] == (
        "could not complete because of conflict with concurrent transaction"
    )


def test_the_gate_decides_a_text_once_and_a_refusal_stays_a_refusal(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from local.redshift import gate, server
    from local.redshift.server import EmulatorConfig, RedshiftEmulator

    calls: list[str] = []
    real = gate.inspect

    def counting(text: str, **kwargs: object) -> list[gate.Statement]:
        calls.append(text)
        return real(text, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gate, "inspect", counting)
    monkeypatch.setattr(server, "GATE_CACHE_SIZE", 2)
    emulator = RedshiftEmulator(EmulatorConfig(port=1, pg_port=1))
    # GIVEN a passed text and a refused one, each sent three times
    for _ in range(3):
        assert [s.run for s in emulator.inspect("select getdate()")] == [emulator.inspect("select getdate()")[0].run]
        with pytest.raises(GateError, match="not supported") as err:
            emulator.inspect("select nextval('s')")
        # THEN the refusal is the gate's every time, with no traceback carried over from an earlier raise
        assert err.value.construct and len(list(_frames(err.value.__traceback__))) <= 2
    # AND each text was read by the gate once
    assert calls == ["select getdate()", "select nextval('s')"]
    # WHEN more texts than the cache holds are seen THEN the oldest is read again
    emulator.inspect("select 1")
    emulator.inspect("select getdate()")
    assert calls[-2:] == ["select 1", "select getdate()"]


def _frames(tb):  # type: ignore[no-untyped-def]
    while tb is not None:
        yield tb
        tb = tb.tb_next
