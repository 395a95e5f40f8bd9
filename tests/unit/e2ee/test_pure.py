"""Pure e2ee pieces: sync-token components and the key-backup replacement rules."""

from __future__ import annotations

import pytest

from homeserver.e2ee.backup import should_replace
from homeserver.e2ee.backup_store import BackupKey
from homeserver.e2ee.tokens import DEVICE_LISTS, TO_DEVICE, format_component, stream_component
from homeserver.errors import MatrixError


def test_stream_components() -> None:
    assert stream_component("42", DEVICE_LISTS) == 42
    assert stream_component("42", TO_DEVICE) == 0
    token = "_".join(["s7", format_component(DEVICE_LISTS, 12), format_component(TO_DEVICE, 5)])
    assert token == "s7_dl12_td5"
    assert stream_component(token, DEVICE_LISTS) == 12
    assert stream_component(token, TO_DEVICE) == 5
    assert stream_component("s7_x9", DEVICE_LISTS) == 0
    for bad in ("", "dl-1", "s7__dl1", "DL4", "dl1;drop", "9" * 30, "x" * 600):
        with pytest.raises(MatrixError) as e:
            stream_component(bad, DEVICE_LISTS, param="from")
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
