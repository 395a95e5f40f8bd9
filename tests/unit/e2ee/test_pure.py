"""Pure e2ee pieces: sync-token components and the key-backup replacement rules."""

from __future__ import annotations

import pytest

from homeserver.e2ee.backup import should_replace
from homeserver.e2ee.backup_store import BackupKey
from homeserver.errors import MatrixError
from homeserver.streams.tokens import StreamToken


def test_stream_token_components() -> None:
    """One token format for every stream (sync.tokens); e2ee reads dl and td from it."""
    assert StreamToken.parse("42", "from").device_lists == 42
    assert StreamToken.parse("42", "from").to_device == 0
    token = StreamToken(events=7, device_lists=12, to_device=5, typing="ab12.3")
    text = token.encode()
    assert text == "s7_td5_dl12_ad0_rc0_pr0_ty3eab12"
    assert StreamToken.parse(text) == token
    assert StreamToken.parse("s7_dl12_td5").device_lists == 12
    assert StreamToken.parse("s7_dl12_td5").to_device == 5
    old = StreamToken.parse("s120")  # a token from before the other streams existed
    assert old == StreamToken(events=120) and old.typing == ""
    assert StreamToken.parse("s7_x9").device_lists == 0  # unknown components are ignored
    for bad in ("", "dl-1", "s7__dl1", "DL4", "dl1;drop", "9" * 30, "x" * 600, "ty4", "s1x"):
        with pytest.raises(MatrixError) as e:
            StreamToken.parse(bad, "from")
        assert e.value.errcode == "M_INVALID_PARAM" and "'from'" in e.value.error


def k(fmi: int, fwd: int, verified: bool) -> BackupKey:
    return BackupKey("!r:x", "s", fmi, fwd, verified, {})


@pytest.mark.parametrize(
    ("old", "new", "replace"),
    [
        (None, k(9, 9, False), True),
        (k(0, 0, False), k(9, 9, True), True),
        (k(9, 9, True), k(0, 0, False), False),
        (k(5, 0, False), k(4, 9, False), True),
        (k(5, 0, False), k(6, 0, False), False),
        (k(5, 3, True), k(5, 2, True), True),
        (k(5, 3, True), k(5, 3, True), False),
    ],
)
def test_backup_replacement_rules(old: BackupKey | None, new: BackupKey, replace: bool) -> None:
    assert should_replace(old, new) is replace
