"""The one secret policy: which names hold credentials, and how they are kept out of what is recorded.

A name is normalised first (`--API-Key`, `api-key`, `api_key` and `API_KEY` are one name), then
judged by its words: `token`, `key`/`keys`, `secret`, `password`/`passwd`, `credential(s)`, or an
`apikey` glued into one word. Counts such as `max_num_batched_tokens` are not secrets, nor is a
name that ends in a measure (`long_prefill_token_threshold`, `password_length`).

Stack `args` may not name a secret (the value would reach argv, `docker-compose.yml`, `ps` and
the pid file); environment values that name one must come from `.env` as `${VAR}`. Whatever
sparkserve records or prints (bench results, status, logs it shows, errors, pid files) passes
through `redact_*` first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

REDACTED = "<redacted>"
_WORDS = frozenset({"token", "key", "keys", "secret", "secrets", "password", "passwd", "pwd", "credential",
                    "credentials", "apikey", "passphrase"})
_GLUED = ("apikey", "secret", "password", "passwd", "credential", "passphrase")
# A last word that makes the name a setting about tokens or keys, not a credential.
_MEASURES = frozenset({"threshold", "budget", "limit", "count", "len", "length", "size"})
# Values shorter than this are not searched for in free text: "1" or "on" would blank out every line.
_MIN_VALUE_LEN = 6


def normalize(name: str) -> str:
    """`--HF-Token` -> `hf_token`: the form every secret check compares."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lstrip("-").lower()).strip("_")


def is_secret_name(name: str) -> bool:
    """Whether a flag, stack arg or environment variable name holds a credential."""
    norm = normalize(name)
    words = norm.split("_")
    if words[-1] in _MEASURES:
        return False
    return bool(_WORDS.intersection(words)) or any(word in norm for word in _GLUED)


def arg_problem(key: str, value: object, env_name: str | None = None) -> str | None:
    """Why a stack `args` entry may not carry this value, or None. Booleans carry no secret
    (`return_tokens_as_token_ids = true` is a switch)."""
    if isinstance(value, bool) or not is_secret_name(key):
        return None
    where = env_name or normalize(key).upper()
    return (f"{key!r} holds a secret and the stack file is not the place for it (it would reach argv, "
            f"docker-compose.yml and the pid file); remove it and put {where}=<value> in .env (chmod 600)")


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A command line with the value of every secret flag replaced: `--api-key X` and `--api-key=X`."""
    out: list[str] = []
    hide_next = False
    for part in argv:
        if hide_next and not part.startswith("--"):
            out.append(REDACTED)
            hide_next = False
            continue
        hide_next = False
        flag, eq, _value = part.partition("=")
        if part.startswith("-") and is_secret_name(flag):
            if eq:
                out.append(f"{flag}={REDACTED}")
            else:
                out.append(part)
                hide_next = True
            continue
        out.append(part)
    return out


def redact_mapping(values: Mapping[str, object]) -> dict[str, object]:
    """A copy with the value under every secret name replaced (booleans kept: they are switches)."""
    return {k: (REDACTED if is_secret_name(k) and not isinstance(v, bool) and v not in (None, "") else v)
            for k, v in values.items()}


def secret_values(*sources: Mapping[str, str]) -> list[str]:
    """Values of secret-named variables, longest first; `os.environ` when no source is given."""
    found = {v for source in (sources or (os.environ,)) for k, v in source.items()
             if is_secret_name(k) and len(v) >= _MIN_VALUE_LEN}
    return sorted(found, key=len, reverse=True)


def redact_text(text: str, values: Iterable[str] | None = None) -> str:
    """Free text (a log line, an error) with known secret values and `--secret-flag value` pairs hidden."""
    for value in secret_values() if values is None else values:
        if len(value) >= _MIN_VALUE_LEN:
            text = text.replace(value, REDACTED)
    return _FLAG_VALUE.sub(_hide_flag_value, text)


_FLAG_VALUE = re.compile(r"(--[A-Za-z0-9][A-Za-z0-9_-]*)([ =])(?!--)(\S+)")


def _hide_flag_value(m: re.Match) -> str:
    return f"{m.group(1)}{m.group(2)}{REDACTED}" if is_secret_name(m.group(1)) else m.group(0)


def known_values(env_file: Path | None = None) -> list[str]:
    """Secret values of this process's environment and, when given and readable, a `.env` file."""
    sources: list[Mapping[str, str]] = [os.environ]
    if env_file is not None:
        from sparkserve.runtime.compose import read_env_file

        try:
            sources.append(read_env_file(env_file))
        except Exception:  # noqa: BLE001 - redaction must never fail the output it protects
            pass
    return secret_values(*sources)


def env_file_warning(path: Path) -> str | None:
    """A warning when a `.env` holding secrets can be read by other users, with the fix."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (f"warning: {path} is readable by other users (mode {stat.S_IMODE(mode):o}) and holds secrets; "
                f"run 'chmod 600 {path}'")
    return None
