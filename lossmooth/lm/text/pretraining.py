"""The pretraining corpus of ``lossmooth lm pretrain`` (:mod:`lossmooth.app.pretrain`) and the manifest
saved with each of its checkpoints: what the LM setting's exact replay (``lm_replay=pretraining``) reads
to make the same split again.

A corpus (a manifest's ``corpus``) names ``sources`` (Debian texts, see :data:`SOURCES`) and
``text_files``; its documents are each source's, then the text files', in that fixed order. They are
split by content hash (:func:`lossmooth.lm.text.corpora.split_heldout` with ``split_salt``) into training
documents and a ``heldout_fraction`` of held-out ones, so the split depends on the text alone, never on
the order or the machine. A list of documents is identified by the SHA-256 of its canonical JSON.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lossmooth.errors import ConfigError
from lossmooth.lm.text import corpora

SOURCES = ("kjv", "wordnet", "fortunes")
MANIFEST = "lossmooth_pretraining.json"


def documents(corpus: dict) -> list[str]:
    """The corpus's documents in a fixed order: each source's, then the text files'."""
    docs: list[str] = []
    for name in corpus["sources"]:
        docs += corpora.load_documents(name)
    if corpus["text_files"]:
        docs += corpora.load_documents("text", corpus["text_files"])
    return docs


def split(corpus: dict) -> tuple[list[str], list[str]]:
    """``(training documents, held-out documents)`` of a pretraining corpus (a manifest's ``corpus``)."""
    return corpora.split_heldout(documents(corpus), corpus["heldout_fraction"], salt=corpus["split_salt"])


def text_sha256(docs: list[str]) -> str:
    """The identity of a list of documents (their canonical JSON's SHA-256), to check that a replay
    made on another machine reads the text the checkpoint was trained on."""
    return hashlib.sha256(json.dumps(docs, ensure_ascii=False).encode("utf-8")).hexdigest()


def read_manifest(folder: str | Path) -> dict:
    """The pretraining manifest saved with a checkpoint (what ``lm_replay=pretraining`` replays)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"lm_replay: {path} not found; exact replay needs a checkpoint made by "
                          "`lossmooth lm pretrain` (use lm_model=own, or another lm_replay)")
    return json.loads(path.read_text())

