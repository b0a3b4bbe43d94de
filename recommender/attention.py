"""DIN-style target attention over the customer's ordered recent items (Zhou et al., KDD 2018).

The mean bag pools the recent items into one vector whatever the candidate and whatever their order. Here the
candidate's item embedding ``q`` attends over the last N items ``h_0 .. h_{N-1}`` (``h_0`` the most recent),
each carrying a learned position (recency) embedding ``p_j``:

    k_j      = h_j + p_j                                   (N, D)
    s_j      = w2 . ReLU(W1 [k_j, q, k_j * q] + b1) + b2   DIN's activation unit (k_j - q is linear in k_j and
                                                           q, so a first linear layer gains nothing from it)
    a_j      = sigmoid(s_j) for real positions, 0 for padding
    interest = sum_j a_j k_j / n                           (D,), n = the number of real positions

With every ``a_j = 1`` the interest is the mean bag (plus the mean position), so the mean bag is a point of
this model's space; unlike a softmax, the weights need not sum to one, so how strongly the history supports a
candidate survives as the interest's length (DIN's argument against normalising). An empty history gives a
zero vector, as the mean bag does.

:class:`HistoryAttentionSparseArch` is a drop-in for torchrec's ``SparseArch`` inside ``DLRM``: the history's
rows come from the same item table as the candidate (``item_id``) through the same (fused) collection, as N
single-row "slot" features, so training updates them with the table's own optimiser; the interest vector
takes the ``recent_items`` place in the DLRM's interaction, like any other embedding.

Shapes: B rows, N history positions, D embedding dim, H the activation unit's width.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

HISTORY_KEY = "recent_items"
QUERY_KEY = "item_id"


def slot_keys(length: int, key: str = HISTORY_KEY) -> list[str]:
    """Feature names of the history positions as the embedding collection sees them (0 = most recent)."""
    return [f"{key}@{j}" for j in range(length)]


class TargetAttention(nn.Module):
    """forward(query (B, D), keys (B or 1, N, D), mask (B or 1, N) bool) -> interest (B, D).

    ``keys`` are the history rows without positions (this module adds them); a history shared by all B rows
    (one user's, at serving) is passed once as (1, N, D) and broadcast, never copied per candidate."""

    def __init__(self, dim: int, length: int, hidden: int = 16):
        super().__init__()
        self.dim, self.length, self.hidden = dim, length, hidden
        self.position = nn.Parameter(torch.randn(length, dim) * 0.01)
        self.lin1 = nn.Linear(3 * dim, hidden)
        self.lin2 = nn.Linear(hidden, 1)
        with torch.no_grad():  # start near the mean bag: every weight about sigmoid(2) = 0.88
            self.lin2.weight.mul_(0.1)
            self.lin2.bias.fill_(2.0)

    def keys_with_position(self, rows: torch.Tensor) -> torch.Tensor:
        """(B, n, D) history rows -> (B, n, D) plus their position embeddings (n <= N)."""
        return rows + self.position[: rows.shape[1]]

    def weights(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N) attention weights in [0, 1], zero on padding. ``keys`` already carry their positions."""
        D, H = self.dim, self.hidden
        B, N = query.shape[0], keys.shape[1]
        W = self.lin1.weight  # (H, 3D): the [k, q, k * q] blocks applied separately so a shared history's
        # part is computed once, not once per candidate
        a = keys @ W[:, :D].T  # (B|1, N, H)
        b = torch.addmm(self.lin1.bias, query, W[:, D : 2 * D].T)  # (B, H)
        if keys.shape[0] == 1 and B > 1:
            # one history for all B candidates (serving): (k_j * q) W3^T = q (diag(k_j) W3^T), so the user's
            # (D, N*H) matrix is built once and every candidate costs one GEMM row
            kw = (keys[0].T.unsqueeze(-1) * W[:, 2 * D :].T.unsqueeze(1)).reshape(D, N * H)  # (D, N*H)
            h = (query @ kw).view(B, N, H)
        else:
            h = (keys * query.unsqueeze(1)) @ W[:, 2 * D :].T  # (B, N, H)
        h = torch.relu(h + a + b.unsqueeze(1))
        s = (h @ self.lin2.weight.T).squeeze(-1) + self.lin2.bias  # (B, N)
        return torch.sigmoid(s) * mask

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        k = self.keys_with_position(keys)
        w = self.weights(query, k, mask)  # (B, N)
        n = mask.sum(-1, keepdim=True).clamp_min(1).to(w.dtype)  # (B|1, 1)
        return torch.matmul((w / n).unsqueeze(1), k).squeeze(1)  # (B, D)


def recency_slots(values: torch.Tensor, lengths: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Jagged bags (oldest first, as the features build them) -> ((B, N) rows, (B, N) mask), column 0 the most
    recent item; a bag longer than N keeps its N most recent items, padding is 0 with mask False."""
    lengths = lengths.to(torch.int64)
    B = lengths.shape[0]
    ends = torch.cumsum(lengths, 0)  # one past each bag's last (most recent) value
    j = torch.arange(length, device=values.device)
    mask = j.unsqueeze(0) < lengths.clamp_max(length).unsqueeze(1)  # (B, N)
    idx = (ends.unsqueeze(1) - 1 - j.unsqueeze(0)).clamp_min(0)
    if values.numel() == 0:
        return torch.zeros(B, length, dtype=torch.int64, device=values.device), mask
    rows = values.to(torch.int64)[idx.clamp_max(values.numel() - 1)]
    return torch.where(mask, rows, torch.zeros_like(rows)), mask


class HistoryAttentionSparseArch(nn.Module):
    """torchrec ``SparseArch`` with the ``recent_items`` bag replaced by a target-attention interest vector.

    forward(KJT with the model's keys, ``recent_items`` jagged, oldest first) -> (B, F, D) in
    ``sparse_feature_names`` order (the interaction's order, ``recent_items`` holding the interest).

    ``embedding_bag_collection`` holds the same tables as the mean model (same state-dict keys and shapes);
    the item table is read by ``item_id`` and by one single-row feature per history position.
    """

    def __init__(self, embedding_bag_collection: EmbeddingBagCollection, feature_names: list[str], length: int):
        super().__init__()
        self.embedding_bag_collection = embedding_bag_collection
        configs = embedding_bag_collection.embedding_bag_configs()
        self.D: int = configs[0].embedding_dim
        self._sparse_feature_names = list(feature_names)
        self.F: int = len(self._sparse_feature_names)
        self.length = int(length)
        self.slots = slot_keys(self.length)
        self.attention = TargetAttention(self.D, self.length)

    @property
    def sparse_feature_names(self) -> list[str]:
        return self._sparse_feature_names

    def slot_features(self, features: KeyedJaggedTensor) -> tuple[KeyedJaggedTensor, torch.Tensor]:
        """The collection's input (the history spread over its position slots) and the (B, N) padding mask."""
        B = features.stride()
        keys = features.keys()
        r = keys.index(HISTORY_KEY)
        values, lengths = features.values(), features.lengths()
        bounds = features.offset_per_key()
        lo, hi = bounds[r], bounds[r + 1]
        rows, mask = recency_slots(values[lo:hi], lengths[r * B : (r + 1) * B], self.length)
        mask_t = mask.T  # key-major: slot j's values for every row, then slot j + 1's
        kjt = KeyedJaggedTensor(
            keys=[k for k in keys if k != HISTORY_KEY] + self.slots,
            values=torch.cat([values[:lo], values[hi:], rows.T[mask_t].to(values.dtype)]),
            lengths=torch.cat([lengths[: r * B], lengths[(r + 1) * B :], mask_t.reshape(-1).to(lengths.dtype)]),
            stride=B,
        )
        return kjt, mask

    def forward(self, features: KeyedJaggedTensor) -> torch.Tensor:
        kjt, mask = self.slot_features(features)
        pooled = self.embedding_bag_collection(kjt).to_dict()
        seq = torch.stack([pooled[s] for s in self.slots], dim=1)  # (B, N, D); padding rows are zeros
        interest = self.attention(pooled[QUERY_KEY], seq, mask)
        return torch.stack([interest if k == HISTORY_KEY else pooled[k] for k in self._sparse_feature_names], dim=1)
