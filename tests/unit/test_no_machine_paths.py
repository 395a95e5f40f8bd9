"""Tests find their files relative to the repository, never at a machine's absolute path:
CI runs in a fresh clone in another folder, with shared/ beside it."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# A string literal starting with a machine location such as "/work/", "/home/" or "/root/".
_ABSOLUTE = re.compile(r"""["'](/work|/home|/root|/Users)/""")


def test_tests_use_no_absolute_machine_paths() -> None:
    offenders = []
    for path in sorted((REPO_ROOT / "tests").rglob("*.py")):
        if path.resolve() == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _ABSOLUTE.search(line):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_shared_spec_is_beside_the_repository() -> None:
    spec = REPO_ROOT.parent / "shared" / "spec" / "matrix-client-server-api.openapi.json"
    assert spec.is_file(), f"{spec} is missing: shared/ must sit beside the repository"
