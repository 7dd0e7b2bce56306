"""Packing encoded documents into fixed-length rows, and the order in which rows are batched.

Input: documents as ``(ids, mask)`` pairs (``lossmooth.lm.text.chat``): ``ids`` int [n], ``mask`` bool [n]
with ``mask[k]`` True iff token ``k`` is a training target; a bare ``ids`` array means every token is
a target (replay text).

Output (``Packed``), arrays of shape ``[N, L]`` (``L = seq_len``):

* ``tokens`` int32 -- the input ids (``pad_id`` in padding);
* ``loss_mask`` bool -- **aligned to the prediction**: ``loss_mask[r, i]`` is True iff the logits at
  position ``i`` are trained to predict ``tokens[r, i + 1]``, i.e.::

      loss_mask[r, i] = target[r, i + 1]  and  seg[r, i + 1] == seg[r, i] != 0     (i < L - 1)
      loss_mask[r, L - 1] = False

  so the loss is ``sum(ce(logits[:, i], tokens[:, i + 1]) * loss_mask[:, i]) / sum(loss_mask)``
  (``Packed.targets()`` gives ``tokens`` shifted left by one). A document's first token is never a
  target (nothing before it may predict it), no token of one document predicts the next document's,
  and padding never has loss;
* ``segment_ids`` int32 -- 1, 2, ... for the documents (or pieces) within a row, 0 for padding;
* ``positions`` int32 -- the position of each token for RoPE.

Two layouts:

* ``cross_document_attention=False`` (default): documents are kept apart. A document longer than
  ``L`` is cut into pieces of at most ``L`` tokens that **overlap by one token** (starts at
  ``0, L-1, 2(L-1), ...``): a piece's first token is only context, its target having been the last
  prediction of the previous piece, so every token but the document's first is a target exactly
  once. Pieces are placed first-fit (each goes into the lowest-numbered row with room for it), rows
  are padded at the end, positions restart at 0 for every piece, and the decoder restricts
  attention to the token's own segment.
* ``cross_document_attention=True``: the documents are concatenated into one stream, cut into rows
  that again overlap by one token (row ``r`` is ``stream[r(L-1) : r(L-1) + L]``), positions are
  ``0 .. L-1`` along the row and attention crosses documents; segment ids still number the
  documents so the loss mask can cut the boundaries. Only the last row can hold padding
  (``drop_remainder`` drops it instead).

The document order is ``np.random.default_rng(SeedSequence([seed, 0])).permutation``: the same seed
gives identical arrays, different seeds different rows. ``batches`` draws row indices by epochs.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence, Union

import numpy as np

from lossmooth.errors import ConfigError

Doc = Union[np.ndarray, Sequence[int], tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Packed:
    """Packed rows (see the module docstring for the meaning of each array)."""

    tokens: np.ndarray       # int32 [N, L]
    loss_mask: np.ndarray    # bool  [N, L]; position i trains the prediction of tokens[:, i + 1]
    segment_ids: np.ndarray  # int32 [N, L]; 0 = padding
    positions: np.ndarray    # int32 [N, L]
    seq_len: int
    seed: int
    cross_document_attention: bool
    num_documents: int       # documents placed (those with at least 2 tokens)
    num_pieces: int          # segments in all (a document longer than seq_len yields several)
    num_dropped: int         # documents with fewer than 2 tokens: nothing to predict in them

    @property
    def num_rows(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def num_loss_tokens(self) -> int:
        """Trained predictions in all rows (``loss_mask.sum()``)."""
        return int(self.loss_mask.sum())

    @property
    def fill_ratio(self) -> float:
        """Fraction of the ``N * L`` slots holding a real token (``segment_ids > 0``)."""
        return float((self.segment_ids > 0).mean()) if self.tokens.size else 0.0

    def targets(self, pad_id: int = 0) -> np.ndarray:
        """``targets[:, i] = tokens[:, i + 1]`` (``pad_id`` in the last column): the label of position i."""
        out = np.full_like(self.tokens, pad_id)
        out[:, :-1] = self.tokens[:, 1:]
        return out

    def rows(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The arrays of rows ``idx`` (any integer index array), by field name."""
        return {"tokens": self.tokens[idx], "loss_mask": self.loss_mask[idx],
                "segment_ids": self.segment_ids[idx], "positions": self.positions[idx]}

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"tokens": self.tokens, "loss_mask": self.loss_mask, "segment_ids": self.segment_ids,
                "positions": self.positions}


def _as_pair(doc: Doc) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(doc, tuple) and len(doc) == 2 and np.ndim(doc[0]) == 1 and np.ndim(doc[1]) == 1:
        ids, mask = np.asarray(doc[0], np.int32), np.asarray(doc[1], bool)
        if ids.shape != mask.shape:
            raise ValueError(f"a document's ids {ids.shape} and mask {mask.shape} differ in shape")
        return ids, mask
    ids = np.asarray(doc, np.int32)
    return ids, np.ones(ids.shape, bool)


def _split(n: int, seq_len: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of the pieces of an ``n``-token document: length <= seq_len, overlapping by one."""
    return [(s, min(s + seq_len, n)) for s in range(0, n - 1, seq_len - 1)]


def _first_fit(lengths: Sequence[int], capacity: int) -> np.ndarray:
    """Row of each item under first-fit, in O(log rows) per item with a max-segment tree.

    Leaves are rows (at most one per item) holding their free space; an internal node holds the
    largest free space below it, so the lowest row with room for ``m`` is found by descending to the
    leftmost child whose value is >= m.
    """
    size = 1
    while size < max(len(lengths), 1):
        size *= 2
    tree = [capacity] * (2 * size)
    rows = np.empty(len(lengths), np.int64)
    for k, m in enumerate(lengths):
        node = 1
        while node < size:
            node = 2 * node if tree[2 * node] >= m else 2 * node + 1
        rows[k] = node - size
        tree[node] -= m
        node //= 2
        while node:
            tree[node] = max(tree[2 * node], tree[2 * node + 1])
            node //= 2
    return rows


def _overlapping_rows(stream: np.ndarray, n_rows: int, L: int, fill) -> np.ndarray:
    """``out[r] = stream[r(L-1) : r(L-1) + L]``, ``fill`` past the end, without an [N, L] index array."""
    need = n_rows * (L - 1) + 1
    padded = np.full(max(need, len(stream)), fill, dtype=stream.dtype)
    padded[:len(stream)] = stream
    out = np.empty((n_rows, L), dtype=stream.dtype)
    out[:, :-1] = padded[:n_rows * (L - 1)].reshape(n_rows, L - 1)
    out[:, -1] = padded[L - 1:need:L - 1]
    return out


def _loss_mask(target: np.ndarray, seg: np.ndarray) -> np.ndarray:
    out = np.zeros(target.shape, bool)
    out[:, :-1] = target[:, 1:] & (seg[:, 1:] == seg[:, :-1]) & (seg[:, :-1] > 0)
    return out


def pack(docs: Sequence[Doc], seq_len: int, *, seed: int, cross_document_attention: bool = False,
         drop_remainder: bool = False, pad_id: int = 0) -> Packed:
    """Pack ``docs`` into rows of ``seq_len`` tokens (layouts and array meanings: module docstring).

    ``drop_remainder`` applies to the streaming layout (``cross_document_attention=True``): it drops
    the last row when the stream does not fill it, instead of padding it. In the per-document layout
    rows carry padding by construction and all are kept. Documents with fewer than 2 tokens have
    nothing to predict and are dropped (``Packed.num_dropped``). ``pad_id`` fills padding slots
    (never attended to, never a target; any valid id works).
    """
    if seq_len < 2:
        raise ConfigError(f"seq_len={seq_len} must be at least 2 (one token predicts the next)")
    pairs = [_as_pair(d) for d in docs]
    keep = [p for p in pairs if len(p[0]) >= 2]
    num_dropped = len(pairs) - len(keep)
    if not keep:
        raise ConfigError(f"packing: none of the {len(pairs)} documents has 2 or more tokens; nothing to train on")
    order = np.random.default_rng(np.random.SeedSequence([seed, 0])).permutation(len(keep))
    keep = [keep[i] for i in order]
    L = seq_len

    if cross_document_attention:
        ids = np.concatenate([p[0] for p in keep])
        total = len(ids)
        n_rows = len(range(0, total - 1, L - 1))
        if drop_remainder and n_rows and (n_rows - 1) * (L - 1) + L > total:
            n_rows -= 1
        if n_rows == 0:
            raise ConfigError(f"packing: {total} tokens do not fill one row of seq_len={L} with drop_remainder=True")
        tokens = _overlapping_rows(ids, n_rows, L, pad_id)
        target = _overlapping_rows(np.concatenate([p[1] for p in keep]), n_rows, L, False)
        # document k's tokens carry k + 1 (0 = padding); renumbering from the row's first document
        # gives 1, 2, ... because documents are consecutive in the stream
        doc = _overlapping_rows(np.repeat(np.arange(1, len(keep) + 1, dtype=np.int32),
                                          [len(p[0]) for p in keep]), n_rows, L, 0)
        seg = np.where(doc > 0, doc - doc[:, :1] + 1, 0).astype(np.int32)
        positions = np.where(doc > 0, np.arange(L, dtype=np.int32)[None, :], 0).astype(np.int32)
        num_pieces = int(seg.max(axis=1).sum())  # segments are numbered 1..k within each row
    else:
        pieces = [(k, a, b) for k, p in enumerate(keep) for a, b in _split(len(p[0]), L)]
        rows = _first_fit([b - a for _, a, b in pieces], L)
        n_rows = int(rows.max()) + 1
        tokens = np.full((n_rows, L), pad_id, np.int32)
        target = np.zeros((n_rows, L), bool)
        seg = np.zeros((n_rows, L), np.int32)
        positions = np.zeros((n_rows, L), np.int32)
        fill = np.zeros(n_rows, np.int64)
        count = np.zeros(n_rows, np.int32)
        for (k, a, b), r in zip(pieces, rows):
            o, m = fill[r], b - a
            count[r] += 1
            tokens[r, o:o + m] = keep[k][0][a:b]
            target[r, o:o + m] = keep[k][1][a:b]
            seg[r, o:o + m] = count[r]
            positions[r, o:o + m] = np.arange(m)
            fill[r] += m
        num_pieces = len(pieces)

    return Packed(tokens=tokens, loss_mask=_loss_mask(target, seg), segment_ids=seg, positions=positions,
                  seq_len=L, seed=int(seed), cross_document_attention=bool(cross_document_attention),
                  num_documents=len(keep), num_pieces=num_pieces, num_dropped=num_dropped)


def batches(packed: Packed | int, batch_size: int, *, seed: int, num_batches: int, start: int = 0) -> np.ndarray:
    """Row indices of batches ``start .. start + num_batches - 1``: int32 ``[num_batches, batch_size]``.

    Epoch ``e`` visits the rows in the order ``default_rng(SeedSequence([seed, 1, e])).permutation(N)``
    and is cut into ``N // batch_size`` batches (the ``N % batch_size`` rows left at the end of an
    epoch wait for a later epoch, whose order differs), so no row repeats within a batch and batch
    ``b`` depends only on ``(seed, b)``: a run resumed at step ``start`` sees the same batches as one
    that never stopped. A compiled step gathers the rows with these indices.
    """
    n = packed if isinstance(packed, int) else packed.num_rows
    if batch_size < 1 or batch_size > n:
        raise ConfigError(f"batch_size={batch_size} must be between 1 and the number of packed rows ({n}); "
                          f"lower the batch size or add data")
    if num_batches < 0 or start < 0:
        raise ConfigError(f"num_batches={num_batches} and start={start} must be non-negative")
    per_epoch = n // batch_size
    out = np.empty((num_batches, batch_size), np.int32)
    perm_epoch, perm = -1, None
    for j, b in enumerate(range(start, start + num_batches)):
        epoch, k = divmod(b, per_epoch)
        if epoch != perm_epoch:
            perm = np.random.default_rng(np.random.SeedSequence([seed, 1, epoch])).permutation(n)
            perm_epoch = epoch
        out[j] = perm[k * batch_size:(k + 1) * batch_size]
    return out
