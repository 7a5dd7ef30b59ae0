"""Text as the warehouse stores it (core/values.py): properties of the reversible forms and the cuts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cognito_streams.core.values import (
    clip_text,
    decoded_value,
    escape,
    original_key,
    stored_key,
    stored_value,
    unescape,
)

# Any valid text, with U+0000, backslashes and the text "\0" often (what the forms must get right).
chars = st.one_of(st.characters(blacklist_categories=("Cs",)), st.sampled_from(["\x00", "\\", "0", "é", "€", "😀"]))
texts = st.text(chars, max_size=80)


@given(texts)
def test_any_text_round_trips_through_the_escape_which_holds_no_nul(text: str) -> None:
    assert "\x00" not in escape(text)
    assert unescape(escape(text)) == text


@settings(max_examples=500)
@given(texts, st.integers(min_value=0, max_value=100))
def test_a_stored_value_fits_in_bytes_holds_no_nul_and_gives_the_value_or_a_prefix_of_it(
    value: str, max_bytes: int
) -> None:
    # GIVEN any value and column width  WHEN it is given its stored form
    stored = stored_value(value, max_bytes)
    data = value.encode()
    # THEN it fits the column in bytes (whole characters: it is a str), holds no U+0000, and is flagged
    # exactly when it is not the value as it is
    assert len(stored.text.encode()) <= max_bytes and "\x00" not in stored.text
    assert stored.value_bytes == len(data)
    assert stored.flagged == ("\x00" in value or len(data) > max_bytes)
    assert stored.flagged or stored.text == value
    # AND decoding it gives the exact value back, or a prefix of it (the exact bytes are kept at value_ref)
    text, exact = decoded_value(stored.text, stored.flagged, stored.value_bytes)
    assert text == value if exact else (value.startswith(text) and len(text.encode()) < len(data))
    # AND a value holding U+0000 that fits once escaped is stored exactly (reversibly)
    if "\x00" in value and len(escape(value).encode()) <= max_bytes:
        assert exact


@settings(max_examples=500)
@given(texts, texts)
def test_stored_keys_are_distinct_for_distinct_keys_and_give_the_key_back(a: str, b: str) -> None:
    for key in (a, b):
        assert "\x00" not in stored_key(key) and original_key(stored_key(key)) == key
        # a key without U+0000 or the text "\0" is stored as it is (the form contract version 1 had)
        if "\x00" not in key and "\\0" not in key:
            assert stored_key(key) == key
    assert (stored_key(a) == stored_key(b)) == (a == b)


@given(st.text(st.one_of(st.sampled_from(["\x00", "\\", "😀", "€"]), st.characters()), max_size=1024))
def test_a_key_within_cognitos_1024_characters_fits_record_key_in_bytes_once_stored(key: str) -> None:
    assert len(stored_key(key).encode("utf-8", "surrogatepass")) <= 4096


@settings(max_examples=500)
@given(st.text(st.characters(), max_size=200), st.integers(min_value=0, max_value=300))
def test_clipped_text_is_a_whole_character_prefix_within_the_width_in_bytes(text: str, width: int) -> None:
    clipped = clip_text(text, width)
    data = clipped.encode("utf-8")  # strict: valid UTF-8, no lone surrogate
    assert len(data) <= width
    assert text.encode("utf-8", "replace").startswith(data)
    if len(text.encode("utf-8", "surrogatepass")) <= width and text.encode("utf-8", "replace").decode() == text:
        assert clipped == text


def test_forty_three_byte_characters_are_cut_at_a_character_boundary() -> None:
    assert clip_text("€" * 40, 64) == "€" * 21  # 63 bytes, not 64 characters
    assert stored_value("€" * 40, 64) == ("€" * 21, True, 120)


def test_the_documented_examples() -> None:
    # docs/semantics.md, "Values the warehouse cannot store as they are"
    assert stored_value("a\x00b\\c", 100) == ("a\\0b\\\\c", True, 5)
    assert decoded_value("a\\0b\\\\c", True, 5) == ("a\x00b\\c", True)
    assert stored_key("le\x00vel") == "le\\0vel" and stored_key("C:\\0") == "C:\\\\0"
    assert stored_key("C:\\dir") == "C:\\dir"
    assert original_key("le\\0vel") == "le\x00vel" and original_key("C:\\\\0") == "C:\\0"
