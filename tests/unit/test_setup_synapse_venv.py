"""``scripts/setup-synapse`` installs into the venv ``MYELIN_SYNAPSE_VENV`` names, the one
``tests/interop/synapse.py`` and the benchmarks start Synapse from (``scripts/test`` runs it
first): with the variable set, the repository's ``.venv-synapse`` is not looked at."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "setup-synapse"


def install_stamp() -> str:
    """What the script keeps in its stamp: the sha256 of its requirement and itself."""
    text = SCRIPT.read_text()
    match = re.search(r"^SYNAPSE_REQUIREMENT='([^']+)'", text, re.M)
    assert match is not None
    return hashlib.sha256(f"{match.group(1)}\n{text}".encode()).hexdigest()


def test_setup_synapse_checks_the_venv_the_variable_names(tmp_path: Path) -> None:
    venv = tmp_path / "synapse-venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp_path / "calls"
    python = venv / "bin" / "python"
    # An installed Synapse, as far as the script can tell: its python runs `import synapse`.
    python.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit 0\n')
    python.chmod(0o755)
    (venv / ".myelin-install-stamp").write_text(install_stamp() + "\n")
    env = dict(os.environ, MYELIN_SYNAPSE_VENV=str(venv), MYELIN_PYTHON="no-such-python-here")
    done = subprocess.run(
        [str(SCRIPT)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # up to date: nothing installed, nothing said
    assert calls.read_text().splitlines() == ["-c import synapse"]


def test_setup_synapse_rebuilds_the_venv_the_variable_names(tmp_path: Path) -> None:
    venv = tmp_path / "synapse-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")  # an interpreter gone bad
    (venv / "bin" / "python").chmod(0o755)
    # No interpreter to rebuild it with, so nothing is installed (nor fetched) here.
    env = dict(os.environ, MYELIN_SYNAPSE_VENV=str(venv), MYELIN_PYTHON="no-such-python-here")
    done = subprocess.run(
        [str(SCRIPT)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert f"{venv} is broken; recreating it" in done.stderr
    assert "needs Python" in done.stderr
    assert not venv.exists()
