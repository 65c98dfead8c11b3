"""A stand-in `nvidia-smi` for a machine without a GPU: replays recorded outputs, logs every call.

It answers exactly the three questions sparkserve asks (--query-gpu, --query-compute-apps,
--version) and fails like the real tool on anything else, so a new question shows up as a failure.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data" / "nvidia_smi"

SCRIPT = """#!{python}
import json, sys
sys.path.insert(0, {here!r})
from fake_nvidia_smi import answer
with open({log!r}, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
code, text = answer(sys.argv[1:], {prefix!r}, {fail_compute_cap!r}, {apps!r})
sys.stdout.write(text)
sys.exit(code)
"""


def answer(argv: list[str], prefix: str, fail_compute_cap: bool, apps: str | None = None) -> tuple[int, str]:
    if argv[:1] == ["--version"]:
        return 0, (DATA / f"{prefix}-version.txt").read_text()
    if len(argv) == 2 and argv[1] == "--format=csv,noheader,nounits":
        if argv[0].startswith("--query-gpu="):
            fields = argv[0].split("=", 1)[1].split(",")
            if "compute_cap" in fields and fail_compute_cap:
                return 2, 'Field "compute_cap" is not a valid field to query.\n'
            lines = (DATA / f"{prefix}-query-gpu.csv").read_text().splitlines()
            return 0, "".join(", ".join(line.split(", ")[: len(fields)]) + "\n" for line in lines)
        if argv[0].startswith("--query-compute-apps="):
            path = Path(apps) if apps else DATA / f"{prefix}-compute-apps.csv"
            return 0, path.read_text() if path.exists() else ""
    return 2, "Invalid combination of input arguments.\n"


def install(bin_dir: Path, prefix: str, *, fail_compute_cap: bool = False,
            processes: list[tuple[int, int]] | None = None) -> Path:
    """Write `nvidia-smi` into bin_dir; returns the log file of its calls (one JSON argv a line).

    `processes` (pid, MiB) replace the recorded compute processes, all on the recorded GPU.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = bin_dir / "nvidia-smi.calls"
    apps = None
    if processes is not None:
        uuid = (DATA / f"{prefix}-query-gpu.csv").read_text().split(", ")[2]
        apps = bin_dir / "compute-apps.csv"
        apps.write_text("".join(f"{uuid}, {pid}, {mib}\n" for pid, mib in processes))
    script = bin_dir / "nvidia-smi"
    script.write_text(SCRIPT.format(python=sys.executable, here=str(Path(__file__).parent), log=str(log),
                                    prefix=prefix, fail_compute_cap=fail_compute_cap,
                                    apps=str(apps) if apps else None))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

