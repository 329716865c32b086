"""push.storable_key: which source keys the state store holds as they are (one check per
contact read, with a fast path for plain ASCII keys that must agree with the full check)."""

from __future__ import annotations

import pytest

from campaign_bridge.errors import RecordError
from campaign_bridge.push import storable_key


@pytest.mark.parametrize(
    "key", ["42", "a" * 255, "é" * 255, "contact-\u00e9-\U0001f600", "with space", ""]
)
def test_keys_the_column_holds_pass(key: str) -> None:
    storable_key(key)


@pytest.mark.parametrize(
    "key", ["a" * 256, "é" * 256, "nul\x00inside", "lone\ud800surrogate", "\x00"]
)
def test_keys_the_column_cannot_hold_are_rejected(key: str) -> None:
    with pytest.raises(RecordError) as caught:
        storable_key(key)
    assert caught.value.reason_code == "unstorable_value"
