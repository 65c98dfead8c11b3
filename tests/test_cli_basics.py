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


def test_only_the_invoked_command_is_built():
    from sparkserve.cli import _command_name, _only_the_invoked, app

    assert [_command_name(c) for c in _only_the_invoked(["plan", "--json"]).registered_commands] == ["plan"]
    assert [_command_name(c) for c in _only_the_invoked(["-V", "doctor", "x"]).registered_commands] == ["doctor"]
    bench = _only_the_invoked(["bench", "compare", "-h"])
    assert bench.registered_commands == [] and [g.name for g in bench.registered_groups] == ["bench"]
    for argv in ([], ["--help"], ["-h", "plan"], ["--version"], ["pln"]):
        assert _only_the_invoked(argv) is app, argv
    assert len(app.registered_commands) > 10  # the full app is left whole for the next call


LEAN = "import sys; from sparkserve import cli; sys.argv[0] = 'sparkserve'; cli.main()"
FULL = "import sys; from sparkserve import cli; sys.argv[0] = 'sparkserve'; cli._only_the_invoked = lambda a: cli.app; cli.main()"


@pytest.mark.parametrize("args", [["plan", "--json"], ["plan", "-m", "Qwen/Qwen3-32B", "--concurrency", "1,8"],
                                  ["plan", "--help"], ["plan", "--bogus"], ["plan", "--concurrency", "0"],
                                  ["-V", "plan"], ["bench", "compare", "-h"], ["doctor", "--help"]])
def test_the_lean_app_answers_as_the_full_one(args):
    """main() registers only the command named; stdout, stderr and exit code stay those of the whole app."""
    env = {"COLUMNS": "120", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    full, lean = (subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                                 env=env) for code in (FULL, LEAN))
    assert (lean.returncode, lean.stdout, lean.stderr) == (full.returncode, full.stdout, full.stderr)
    assert full.stdout or full.stderr
