"""Hugging Face repos that make users accept a licence first: downloading them needs HF_TOKEN."""

from __future__ import annotations

GATED_PREFIXES = ("meta-llama/", "google/gemma", "mistralai/")


def is_gated(model_id: str) -> bool:
    return model_id.startswith(GATED_PREFIXES)
