"""Count and synthesise tokens with the model's own tokenizer (the `tokenizers` library).

Where the tokenizer comes from, in order: `--tokenizer PATH|HF_ID`; the directory vLLM reports
as the model's `root` in /v1/models when it is readable here; the Hugging Face cache for the
root or the served name. With none, prompt lengths are approximate and the result says so.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sparkserve.errors import UserError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TOKENIZER_FILE = "tokenizer.json"
_WORD = re.compile(r"^ ?[A-Za-z]{2,12}$")
_POOL_SIZE = 4000
# Fallback words when no tokenizer is known: common, short English words, mostly one token each
# in the BPE vocabularies of current models.
_PLAIN_WORDS = (
    "time year people way day man thing woman life child world school state family student group "
    "country problem hand part place case week company system program question work government number "
    "night point home water room mother area money story fact month lot right study book eye job word "
    "business issue side kind head house service friend father power hour game line end member law car "
    "city community name president team minute idea kid body information back parent face others level "
    "office door health person art war history party result change morning reason research girl guy "
    "moment air teacher force education"
).split()


@dataclass
class TokenSource:
    """A tokenizer (or none) and a line saying where it came from, for the result."""

    tokenizer: Tokenizer | None
    source: str  # a path, an HF id, or "approximate"

    @property
    def exact(self) -> bool:
        return self.tokenizer is not None

    def count(self, text: str) -> int:
        if self.tokenizer is None:
            return approximate_count(text)
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)


def approximate_count(text: str) -> int:
    """About one token per word and per 4 characters of long words: a stated guess, never exact."""
    return sum(max(1, (len(w) + 3) // 4) for w in text.split())


def hf_cache_dirs() -> list[Path]:
    """Where huggingface_hub keeps downloads (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)."""
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]) / "hub")
    dirs.append(Path.home() / ".cache" / "huggingface" / "hub")
    return dirs


def cached_tokenizer_file(repo_id: str) -> Path | None:
    """tokenizer.json of a repo already in the HF cache (newest snapshot), without any download."""
    if repo_id.count("/") != 1:
        return None
    folder = "models--" + repo_id.replace("/", "--")
    for cache in hf_cache_dirs():
        snapshots = cache / folder / "snapshots"
        if snapshots.is_dir():
            found = sorted(snapshots.glob(f"*/{TOKENIZER_FILE}"), key=lambda p: p.stat().st_mtime, reverse=True)
            if found:
                return found[0]
    return None


def _load_file(path: Path) -> Tokenizer:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def _from_path(value: str) -> Path | None:
    path = Path(value).expanduser()
    if path.is_file():
        return path
    if path.is_dir() and (path / TOKENIZER_FILE).is_file():
        return path / TOKENIZER_FILE
    return None


def resolve_tokenizer(explicit: str | None, model_root: str | None, served_name: str | None) -> TokenSource:
    """The tokenizer to count with; `explicit` must load (UserError otherwise), the rest may not."""
    if explicit:
        path = _from_path(explicit)
        if path is None and Path(explicit).expanduser().exists():
            raise UserError(f"--tokenizer {explicit}: no {TOKENIZER_FILE} there "
                            "(sparkserve reads the fast-tokenizer file)")
        if path is None:
            path = cached_tokenizer_file(explicit)
        if path is not None:
            return TokenSource(_checked_load(path, explicit), str(path))
        try:
            from tokenizers import Tokenizer

            return TokenSource(Tokenizer.from_pretrained(explicit), explicit)
        except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all one message
            raise UserError(f"--tokenizer {explicit}: not a local tokenizer and not loadable from Hugging Face "
                            f"({type(exc).__name__}); pass a directory holding {TOKENIZER_FILE}") from None
    for candidate in (model_root, served_name):
        if not candidate:
            continue
        path = _from_path(candidate) or cached_tokenizer_file(candidate)
        if path is not None:
            try:
                return TokenSource(_load_file(path), str(path))
            except Exception:  # noqa: BLE001 - an unreadable file falls through to the next source
                continue
    return TokenSource(None, "approximate")


def _checked_load(path: Path, label: str) -> Tokenizer:
    try:
        return _load_file(path)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"--tokenizer {label}: cannot load {path} ({exc})") from None


class PromptSynth:
    """Texts of an exact token count: random single-token words, checked and trimmed by encoding.

    Words are vocabulary entries that decode to a short alphabetic word and encode back to that
    one id, so a text of n words is n tokens under pre-tokenizers that split on spaces (byte-level
    BPE, Metaspace); every text is still encoded once and corrected until the count matches.
    """

    def __init__(self, source: TokenSource, seed: int = 0) -> None:
        self.source = source
        self.rng = random.Random(seed)
        self.words = self._word_pool() if source.tokenizer is not None else [" " + w for w in _PLAIN_WORDS]
        self.inexact = 0  # texts that could not be brought to the exact count

    def _word_pool(self) -> list[str]:
        tok = self.source.tokenizer
        assert tok is not None
        size = tok.get_vocab_size(with_added_tokens=False)
        ids = list(range(size))
        random.Random(1234).shuffle(ids)
        pool: list[str] = []
        for start in range(0, len(ids), 4096):
            batch = ids[start:start + 4096]
            texts = tok.decode_batch([[i] for i in batch], skip_special_tokens=True)
            candidates = [(i, t) for i, t in zip(batch, texts, strict=False) if _WORD.match(t)]
            if not candidates:
                continue
            encoded = tok.encode_batch([t for _, t in candidates], add_special_tokens=False)
            pool.extend(t for (i, t), enc in zip(candidates, encoded, strict=False) if enc.ids == [i])
            if len(pool) >= _POOL_SIZE:
                break
        if len(pool) < 50:  # not a word-level vocabulary: plain words, counted and corrected by text()
            return [" " + w for w in _PLAIN_WORDS]
        spaced = [w for w in pool if w.startswith(" ")]
        return spaced if len(spaced) >= 50 else [" " + w.strip() for w in pool]

    def text(self, n_tokens: int, prefix: str = "") -> str:
        """`prefix` plus random words, `n_tokens` tokens in total by the tokenizer (when there is one)."""
        if n_tokens <= 0:
            return prefix
        have = self.source.count(prefix) if prefix else 0
        words = [self.rng.choice(self.words) for _ in range(max(0, n_tokens - have))]
        for _ in range(12):
            text = prefix + "".join(words)
            got = self.source.count(text)
            if got == n_tokens:
                return text
            if got > n_tokens and words:
                del words[-min(len(words), got - n_tokens):]
            elif got < n_tokens:
                words.extend(self.rng.choice(self.words) for _ in range(n_tokens - got))
            else:
                break
        self.inexact += 1
        return prefix + "".join(words)
