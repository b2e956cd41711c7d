#!/usr/bin/env python3
"""The two set-up commands of the README.

    python3 dev.py demo    create .venv if missing, install pgsteady, run `pgsteady demo`
    python3 dev.py test    create .venv if missing, install pgsteady[test], run the test suite

Only the standard library is used here, so this runs on a machine that has
Python 3.11 and nothing else. The virtual environment is re-installed when
pyproject.toml changes (a stamp file in .venv records which version of it was
installed). Extra arguments are passed through to `pgsteady demo` or to pytest.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def ensure_venv(extra: str | None) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"pgsteady needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    spec = f".[{extra}]" if extra else "."
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + spec.encode()).hexdigest()[:16]
    stamp = VENV / f".installed-{extra or 'base'}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    if not (BIN / "python").exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print(f"installing {spec} into {VENV}", flush=True)
    subprocess.run(
        [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", spec],
        cwd=ROOT,
        check=True,
    )
    stamp.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__.strip())
        return 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        ensure_venv(None)
        return subprocess.call([str(BIN / "pgsteady"), "demo", *rest], cwd=ROOT)
    ensure_venv("test")
    return subprocess.call([str(BIN / "python"), "-m", "pytest", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
