"""The fused attention forward's mapspace (FlashAttention's loop nest) for the data-movement bounds.

Fused, ``S = Q K^T``, the softmax and ``O = P V`` run in one loop nest over query tiles (m) and key
tiles (n); S and P live only in the buffer, so the backing store sees Q, K, V and O alone.  The head
dimension d is never split: the softmax needs finished rows of S, and splitting O's columns would
recompute S.  Two loop orders exist:

- m outer (Q-stationary, FlashAttention 2/3): Q and O move once; K and V once per query tile, unless
  all keys fit (one key tile) or all queries do (one query tile);
- n outer (KV-stationary): K and V move once; Q once per key tile, and O's partial rows (with the
  running max and sum, 8 bytes a row) go out and come back between key tiles.

Causal attention visits only the key tiles up to the diagonal: the K/V (m outer) or Q/O (n outer)
traffic counts the tiles actually visited.  The buffer holds a tile of Q, K, V and O and the S/P
tile (``m_t * n_t`` elements) plus the row statistics.  Batch and heads index every tensor: slices
are independent, so the traffic of one (batch, head) slice is multiplied (as in :mod:`.bounds_search`).
"""

from __future__ import annotations

import numpy as np

from .bounds_search import Frontier, frontier, tile_candidates

STATS_BYTES = 8  # running max and sum of a query row, fp32 each


def _visits_m_outer(s: int, mt: np.ndarray, nt: np.ndarray, causal: bool) -> np.ndarray:
    """Keys loaded over all query tiles (m outer), per (m_t, n_t) pair."""
    tm = -(-s // mt)
    if not causal:
        return s * tm.astype(np.float64)
    i = np.arange(int(tm.max()))[None, :]
    last_row = np.minimum(s, (i + 1) * mt[:, None])  # keys a query tile needs: up to its last row
    keys = np.minimum(s, -(-last_row // nt[:, None]) * nt[:, None])  # whole key tiles
    return np.where(i < tm[:, None], keys, 0).sum(axis=1, dtype=np.float64)


def _visits_n_outer(s: int, mt: np.ndarray, nt: np.ndarray, causal: bool) -> np.ndarray:
    """Query rows loaded over all key tiles (n outer), per (m_t, n_t) pair."""
    tn = -(-s // nt)
    if not causal:
        return s * tn.astype(np.float64)
    j = np.arange(int(tn.max()))[None, :]
    first_row = (j * nt[:, None]) // mt[:, None] * mt[:, None]  # whole query tiles from the diagonal on
    return np.where(j < tn[:, None], s - first_row, 0).sum(axis=1, dtype=np.float64)


def fused_search(slices: int, seq: int, d: int, elem: int, causal: bool) -> Frontier:
    """Every (m_t, n_t, loop order) of the fused forward; the Pareto frontier of (occupancy, traffic)."""
    c = tile_candidates(seq)
    mt, nt = (g.ravel() for g in np.meshgrid(c, c, indexing="ij"))
    one = (mt >= seq) | (nt >= seq)  # one tile of queries or of keys: everything moves once
    s_d = float(seq * d * elem)
    m_outer = 2 * s_d + 2 * d * elem * np.where(one, seq, _visits_m_outer(seq, mt, nt, causal))
    rows = np.where(one, seq, _visits_n_outer(seq, mt, nt, causal))
    n_outer = (2 * s_d + d * elem * rows + d * elem * (2 * rows - seq)
               + STATS_BYTES * 2 * (rows - seq))
    occupancy = elem * (2 * mt * d + 2 * nt * d + mt * nt) + STATS_BYTES * mt
    traffic = np.stack([m_outer, n_outer]) * slices
    occ = np.broadcast_to(occupancy.astype(np.float64), traffic.shape).ravel().copy()
    return frontier(occ, traffic.ravel(), ("m", "n"), np.stack([mt, nt], axis=1), [(0, 1), (1, 0)],
                    len(occ), {"d": d})
