"""`--version`, `-h` on every level, through the installed entry points."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sparkserve import __version__


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparkserve", *args], capture_output=True, text=True, timeout=60,
                          env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"})


def test_version():
    for flag in ("--version", "-V"):
        result = cli(flag)
        assert result.returncode == 0 and result.stdout == f"sparkserve {__version__}\n", result.stderr


@pytest.mark.parametrize("args", [["-h"], ["plan", "-h"], ["up", "-h"], ["bench", "-h"], ["bench", "run", "-h"],
                                  ["bench", "compare", "-h"], ["exporter", "-h"]])
def test_short_help_everywhere(args):
    short, long = cli(*args), cli(*args[:-1], "--help")
    assert short.returncode == 0 and "Usage:" in short.stdout, short.stderr
    assert short.stdout == long.stdout
