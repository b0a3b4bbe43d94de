"""Serving: a loaded DLRM that ranks candidates, reusing each user's side across its candidates.

A plain DLRM forward looks every sparse feature up once per (user, item) row: for 500 candidates the
user's id, context and whole recent-items bag are looked up and pooled 500 times. Embedding lookups
are the bottleneck of recommendation inference (MicroRec), so the :class:`Scorer` does fewer of them:

- item side (``item_id``, ``category``, ``brand``, ``price_bucket`` and the item dense columns):
  computed once per catalogue item when the scorer is built and kept as a cache; a request gathers rows;
- user side (``user_id``, ``recent_items`` bag, ``hour_of_day``, ``weekday``, ``device``, ``user_activity``):
  looked up once per user and broadcast over that user's candidates;
- for the plain DLRM interaction (pairwise dot products -> over-arch), everything linear in the
  user's or the item's side alone is folded the same way: user-user dot products and their share of
  the over-arch's first layer are computed once per user, item-item ones once per item, the user's
  embeddings are folded into a per-user first-layer matrix, and only the user x item dot products and
  the per-row dense arch are computed per row. DLRM-DCN runs its own interaction on the assembled rows.

The scores equal those of ``model(dense, kjt)`` up to float rounding (the tests check it).

Paths: ``fp32`` (CPU, or CUDA when present: ``device="auto"``) and ``int8`` (torchrec's quantized
EmbeddingBagCollection via ``torchrec.inference.modules.quantize_embeddings``; CPU).

Shapes: M catalogue items, N candidates of one user, U users, F sparse features (Fu user, Fi item),
D embedding dim, H the over-arch's first layer width.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from torchrec.models.dlrm import DLRM, InteractionArch
from torchrec.modules.embedding_configs import PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recommender.attention import HISTORY_KEY, QUERY_KEY, HistoryAttentionSparseArch, recency_slots
from recommender.features import (
    DENSE_FEATURES,
    ITEM_DENSE,
    ITEM_SPARSE_KEYS,
    PAIR_DENSE,
    PRIOR_FEATURE,
    USER_DENSE,
    USER_SPARSE_KEYS,
)

Precision = Literal["fp32", "int8"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def find_dlrm(model: nn.Module) -> DLRM:
    """The torchrec ``DLRM`` (or ``DLRM_DCN``) inside ``model`` (the model itself, or a wrapper's child)."""
    if isinstance(model, DLRM):
        return model
    for m in model.modules():
        if isinstance(m, DLRM):
            return m
    raise TypeError(f"{type(model).__name__} holds no torchrec DLRM")


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose EmbeddingBagCollections hold int8 rows (row-wise scale/bias), fp32 outputs."""
    from torchrec.inference.modules import quantize_embeddings

    return quantize_embeddings(copy.deepcopy(model).cpu().eval(), dtype=torch.int8, inplace=True)


@dataclass(frozen=True)
class ItemFeatures:
    """Catalogue side, one row per catalogue item (M rows).

    sparse: key in ITEM_SPARSE_KEYS -> (M,) int64 embedding rows; dense: (M, len(ITEM_DENSE)) float32.
    """

    sparse: dict[str, torch.Tensor]
    dense: torch.Tensor

    def __len__(self) -> int:
        return int(self.dense.shape[0])


@dataclass(frozen=True)
class UserFeatures:
    """One user's side of a request.

    sparse: key in USER_SPARSE_KEYS -> (L,) int64 embedding rows (L = 1, except the recent_items bag,
    which may be empty); dense: (len(USER_DENSE),) float32.
    """

    sparse: dict[str, torch.Tensor]
    dense: torch.Tensor


@dataclass(frozen=True)
class ScoreTimings:
    """Nanoseconds in the embedding stage (user lookups) and the MLP / interaction stage (rows)."""

    embedding_ns: int
    mlp_ns: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _first_and_rest(mlp_seq: nn.Module) -> tuple[nn.Linear, nn.Module, list[nn.Module]]:
    """torchrec MLP -> (first Linear, its activation, the remaining layers)."""
    layers = list(mlp_seq._mlp)
    return layers[0]._linear, layers[0]._activation_fn, layers[1:]


class _Folded(nn.Module):
    """The plain DLRM's dense arch + InteractionArch + over arch, rearranged for user-side reuse.

    Built from a DLRM's weights (no copy of its semantics beyond torchrec's documented
    ``InteractionArch``: [dense, triu(pairwise dots of (dense, sparse...))] -> over arch).
    """

    def __init__(
        self, dlrm: DLRM, keys: list[str], user_keys: list[str], item_keys: list[str], row_key: str | None = None
    ):
        """``row_key``: a user-side key whose embedding is given per row instead (target attention's interest
        vector): its dot products with the dense vector, the user's and the item's keys are taken per row."""
        super().__init__()
        D = dlrm.sparse_arch.D
        F = len(keys)
        kind = [("d", 0)] + [("u", user_keys.index(k)) if k in user_keys else ("i", item_keys.index(k)) for k in keys]
        Fu, Fi = len(user_keys), len(item_keys)
        # over arch, first layer split by the kind of each input column
        over_mlp, over_final = dlrm.over_arch.model[0], dlrm.over_arch.model[1]
        lin1, self.act1, rest = _first_and_rest(over_mlp)
        self.over_rest = nn.Sequential(*rest, over_final)
        W1, b1 = lin1.weight.detach().float().cpu(), lin1.bias.detach().float().cpu()  # built on CPU, moved with .to()
        H = W1.shape[0]
        W_du = torch.zeros(H, Fu)
        W_di = torch.zeros(H, Fi)
        W_ui = torch.zeros(H, Fi, Fu)
        uu, ii, W_uu, W_ii = [], [], [], []
        tri = torch.triu_indices(F + 1, F + 1, offset=1)
        row = ("u", user_keys.index(row_key)) if row_key is not None else None
        W_r = torch.zeros(H, 1 + Fu + Fi)  # the row key's dots with [dense, user keys, item keys]
        for p in range(tri.shape[1]):
            col = W1[:, D + p]
            (ka, a), (kb, b) = kind[int(tri[0, p])], kind[int(tri[1, p])]
            if row is not None and row in ((ka, a), (kb, b)):
                ko, o = (kb, b) if (ka, a) == row else (ka, a)
                W_r[:, 0 if ko == "d" else (1 + o if ko == "u" else 1 + Fu + o)] += col
                continue
            if ka == "d":  # dense is index 0, so it is always the first of its pairs
                if kb == "u":
                    W_du[:, b] += col
                else:
                    W_di[:, b] += col
            elif ka == kb == "u":
                uu.append((a, b))
                W_uu.append(col)
            elif ka == kb == "i":
                ii.append((a, b))
                W_ii.append(col)
            else:
                ui_item, ui_user = (a, b) if ka == "i" else (b, a)
                W_ui[:, ui_item, ui_user] += col
        self.register_buffer("W_d", W1[:, :D].clone())
        self.register_buffer("b1", b1.clone())
        self.register_buffer(
            "W_restT", torch.cat([W_ui.reshape(H, Fi * Fu), W_di], dim=1).T.contiguous()
        )  # (Fi*Fu + Fi, H)
        W_uu_full = torch.zeros(H, Fu * Fu)  # applied to the flattened user gram matrix U U^T
        for (a, b), col in zip(uu, W_uu, strict=True):
            W_uu_full[:, a * Fu + b] += col
        self.register_buffer("W_uuT", W_uu_full.T.contiguous())
        self.register_buffer("W_duT", W_du.T.contiguous())
        self.register_buffer("W_ii", torch.stack(W_ii, 1) if W_ii else torch.zeros(H, 0))
        self.register_buffer("ii", torch.tensor(ii, dtype=torch.int64).reshape(-1, 2))
        self.register_buffer("W_rT", W_r.T.contiguous())
        # dense arch, first layer split by user / item / pair columns
        lin_d, self.dact1, drest = _first_and_rest(dlrm.dense_arch.model)
        self.dense_rest = nn.Sequential(*drest)
        Wd = lin_d.weight.detach().float().cpu()
        cols = {c: i for i, c in enumerate(DENSE_FEATURES)}
        self.register_buffer("Wd_user", Wd[:, [cols[c] for c in USER_DENSE]].clone())
        self.register_buffer("Wd_item", Wd[:, [cols[c] for c in ITEM_DENSE]].clone())
        self.register_buffer("Wd_pair", Wd[:, [cols[c] for c in PAIR_DENSE]].clone())
        self.register_buffer("bd", lin_d.bias.detach().float().cpu().clone())
        self.Fi, self.Fu, self.D, self.H = Fi, Fu, D, H
        self.Hd = Wd.shape[0]

    def item_cache(
        self, item_emb: torch.Tensor, item_dense: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per catalogue item: embeddings (M, Fi*D), item-item share of over layer 1 (M, H), share of dense layer 1 (M, Hd)."""
        M = item_emb.shape[0]
        ii_dots = (item_emb[:, self.ii[:, 0]] * item_emb[:, self.ii[:, 1]]).sum(-1)  # (M, n_ii)
        c_item = ii_dots @ self.W_ii.T
        d_item = item_dense @ self.Wd_item.T + self.bd
        return item_emb.reshape(M, -1).contiguous(), c_item.contiguous(), d_item.contiguous()

    def user_state(self, U: torch.Tensor, user_dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per user (U users): over layer-1 matrix (U, D + Fi*Fu + Fi + 1, H) and dense layer-1 matrix (U, P + 1, Hd).

        The last row of each is the user's constant (user-user dot products, biases, user dense columns),
        matched by a column of ones in the rows, so it costs no separate pass over the rows.
        """
        n, Fu, D = U.shape
        gram = torch.bmm(U, U.transpose(1, 2)).reshape(n, Fu * Fu)
        c_user = torch.addmm(self.b1, gram, self.W_uuT)  # (U, H): user-user dot products + bias
        # <d, u_a> terms folded into the dense rows of the matrix: (U, D, H)
        WdT = self.W_d.T + (U.transpose(1, 2).reshape(n * D, Fu) @ self.W_duT).view(n, D, -1)
        W = torch.cat([WdT, self.W_restT.expand(n, -1, -1), c_user.unsqueeze(1)], dim=1).contiguous()
        d_user = user_dense @ self.Wd_user.T  # (U, Hd)
        Wd = torch.cat([self.Wd_pair.T.expand(n, -1, -1), d_user.unsqueeze(1)], dim=1).contiguous()
        return W, Wd

    @staticmethod
    def _act_(act, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(x) if act is torch.relu else act(x)

    def rows(
        self,
        U: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        items: torch.Tensor,
        pair_dense: torch.Tensor,
        row_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (Uc, N) for Uc users x N catalogue rows ``items`` (Uc, N); pair_dense (Uc, N, P); row_emb
        (Uc, N, D): the ``row_key``'s embedding of each row."""
        W, Wd = state
        ie_cache, c_cache, d_cache = cache
        Uc, N = items.shape
        Fi, D = self.Fi, self.D
        flat = items.reshape(-1)
        ones = torch.ones(Uc, N, 1, dtype=pair_dense.dtype, device=pair_dense.device)
        h = d_cache.index_select(0, flat).view(Uc, N, -1)
        h.baddbmm_(torch.cat([pair_dense, ones], dim=2), Wd)
        d = self.dense_rest(self._act_(self.dact1, h))  # (Uc, N, D)
        ie = ie_cache.index_select(0, flat).view(Uc, N, Fi, D)
        if Uc == 1:
            ui = (ie.view(N * Fi, D) @ U[0].T).view(1, N, Fi * self.Fu)
        else:
            ui = torch.bmm(ie.view(Uc, N * Fi, D), U.transpose(1, 2)).view(Uc, N, Fi * self.Fu)
        di = (ie * d.unsqueeze(2)).sum(-1)
        h1 = c_cache.index_select(0, flat).view(Uc, N, -1)
        h1.baddbmm_(torch.cat([d, ui, di, ones], dim=2), W)
        if row_emb is not None:
            rd = (row_emb * d).sum(-1, keepdim=True)
            ru = torch.bmm(row_emb, U.transpose(1, 2))  # (Uc, N, Fu)
            ri = (ie * row_emb.unsqueeze(2)).sum(-1)  # (Uc, N, Fi)
            h1 += torch.cat([rd, ru, ri], dim=2) @ self.W_rT
        return self.over_rest(self._act_(self.act1, h1)).reshape(Uc, N)


class _Table:
    """One embedding table read row by row: fp32 weights, or int8 rows with a per-row fp32 scale and bias
    (``row = q * scale + bias``, torchrec's row-wise int8 format). Pools by SUM or MEAN like an EmbeddingBag."""

    def __init__(self, pooling: PoolingType, *, weight=None, q=None, scale=None, bias=None):
        self.mean = pooling == PoolingType.MEAN
        self.weight, self.q, self.scale, self.bias = weight, q, scale, bias
        src = weight if weight is not None else q
        self.num_rows, self.dim, self.device = src.shape[0], src.shape[1], src.device

    def rows(self, v: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            return self.weight.index_select(0, v)
        return torch.addcmul(
            self.bias.index_select(0, v), self.q.index_select(0, v).float(), self.scale.index_select(0, v)
        )

    def pooled(self, v: torch.Tensor, lengths: torch.Tensor | None, B: int) -> torch.Tensor:
        """(B, dim) pooled rows of the bags ``v`` (lengths (B,); None means one bag). Empty bags give zeros."""
        v = v.to(device=self.device, dtype=torch.int64)
        if B == 1:
            if len(v) == 1:
                return self.rows(v)
            if len(v) == 0:
                return torch.zeros(1, self.dim, device=self.device)
            r = self.rows(v)
            return r.mean(0, keepdim=True) if self.mean else r.sum(0, keepdim=True)
        lengths = lengths.to(device=self.device, dtype=torch.int64)
        if self.weight is not None:
            offsets = torch.zeros(B, dtype=torch.int64, device=self.device)
            torch.cumsum(lengths[:-1], 0, out=offsets[1:])
            return nn.functional.embedding_bag(v, self.weight, offsets, mode="mean" if self.mean else "sum")
        seg = torch.repeat_interleave(torch.arange(B, device=self.device), lengths)
        out = torch.zeros(B, self.dim, device=self.device).index_add_(0, seg, self.rows(v))
        return out / lengths.clamp_min(1).unsqueeze(1) if self.mean else out


class Scorer:
    """A loaded model ready to rank. Build once per model version (and item-feature refresh).

    ``model``: a torchrec ``DLRM``/``DLRM_DCN`` or a module holding one (``recommender.model.Ranker``) whose
    sparse feature names are USER_SPARSE_KEYS + ITEM_SPARSE_KEYS and whose dense input is DENSE_FEATURES.
    ``items``: the catalogue's features (M rows); candidates are catalogue row indices 0..M-1.
    ``default_pair_dense``: PAIR_DENSE values for rows given no pair features (a never-seen pair).
    """

    def __init__(
        self,
        model: nn.Module,
        items: ItemFeatures,
        *,
        precision: Precision = "fp32",
        device: str | torch.device = "auto",
        default_pair_dense: Sequence[float] | torch.Tensor | None = None,
        fold: bool = True,
        row_block: int = 2048,
    ):
        # int8 embeddings are a CPU path: "auto" means the CPU there even when a GPU is present
        self.device = torch.device("cpu") if precision == "int8" and str(device) == "auto" else resolve_device(device)
        if precision not in ("fp32", "int8"):
            raise ValueError(f"precision must be 'fp32' or 'int8', not {precision!r}")
        if precision == "int8" and self.device.type != "cpu":
            raise ValueError("the int8 path is for CPU; use fp32 on CUDA")
        self.precision: Precision = precision
        self.row_block = row_block
        model = copy.deepcopy(model).eval()
        model = quantize_int8(model) if precision == "int8" else model.to(self.device)
        self.model = model
        self.dlrm = find_dlrm(model)
        self.ebc = self.dlrm.sparse_arch.embedding_bag_collection
        self.keys: list[str] = list(self.dlrm.sparse_arch.sparse_feature_names)
        self.F, self.D = self.dlrm.sparse_arch.F, self.dlrm.sparse_arch.D
        # target attention (history_encoder "din"): the user's history rows are read once per user, and each
        # candidate's interest vector is computed from them and its item_id row (no fold: it is per row)
        arch = self.dlrm.sparse_arch
        self.attention = arch.attention if isinstance(arch, HistoryAttentionSparseArch) else None
        self.history_length = arch.length if self.attention is not None else 0
        if sorted(self.keys) != sorted(USER_SPARSE_KEYS + ITEM_SPARSE_KEYS):
            raise ValueError(f"model features {self.keys} are not the user + item keys of recommender.features")
        self._user_keys = [k for k in self.keys if k in USER_SPARSE_KEYS]
        self._item_keys = [k for k in self.keys if k in ITEM_SPARSE_KEYS]
        order = self._user_keys + self._item_keys
        self._perm = torch.tensor([order.index(k) for k in self.keys], device=self.device)
        self._dense_perm = torch.tensor(
            [(USER_DENSE + ITEM_DENSE + PAIR_DENSE).index(c) for c in DENSE_FEATURES], device=self.device
        )
        self._tables = self._readable_tables()
        if self.attention is not None and self._tables is None:
            raise ValueError("a target-attention model needs embedding tables the scorer can read rows from")
        if default_pair_dense is None:
            default_pair_dense = torch.zeros(len(PAIR_DENSE))
        self.default_pair = torch.as_tensor(default_pair_dense, dtype=torch.float32).to(self.device)
        # the ranker's stage-1 prior (recommender.model.Ranker, a small log's model): a + b * the pair column it
        # reads. The constant a moves into this copy's last bias (no work per call); b * column is one in-place add
        prior = getattr(model, "stage1_prior", None)
        self._prior = None
        if prior is not None and bool(prior.detach().abs().sum() > 0):
            with torch.no_grad():
                self.dlrm.over_arch.model[-1].bias += prior[0]
                prior[0] = 0.0  # this copy's own forward stays equal to the original's
            self._prior = (float(prior[1]), PAIR_DENSE.index(PRIOR_FEATURE))
        plain = type(self.dlrm.inter_arch) is InteractionArch
        row_key = HISTORY_KEY if self.attention is not None else None
        self.folded = (
            _Folded(self.dlrm, self.keys, self._user_keys, self._item_keys, row_key).to(self.device)
            if fold and plain
            else None
        )
        self.refresh_items(items)

    def refresh_items(self, items: ItemFeatures) -> None:
        """Recompute the item-side caches for a new catalogue or new item features (e.g. popularity as of now).

        Embeddings are looked up again only when the item sparse ids changed."""
        same_ids = getattr(self, "_item_sparse_cpu", None) is not None and all(
            torch.equal(self._item_sparse_cpu[k], items.sparse[k].to(torch.int64).cpu()) for k in self._item_keys
        )
        self.num_items = len(items)
        self._item_sparse_cpu = {k: items.sparse[k].to(torch.int64).cpu() for k in self._item_keys}
        self.item_dense = items.dense.to(self.device, torch.float32)  # (M, len(ITEM_DENSE))
        with torch.inference_mode():
            if not same_ids:
                self.item_emb = self._item_embeddings(items)  # (M, Fi, D)
            self.item_cache = self.folded.item_cache(self.item_emb, self.item_dense) if self.folded else None

    # -- embedding stage --------------------------------------------------------------------------

    def _readable_tables(self) -> dict[str, _Table] | None:
        """key -> a table we can read rows from directly (fp32, or torchrec's int8 rows with their per-row
        scale and bias); None when the collection is of a kind we do not know (then lookups go through it)."""
        try:
            configs = {c.name: c for c in self.ebc.embedding_bag_configs()}
            if any(c.pooling not in (PoolingType.MEAN, PoolingType.SUM) for c in configs.values()):
                return None
            tables: dict[str, _Table] = {}
            if isinstance(self.ebc, EmbeddingBagCollection):
                for name, c in configs.items():
                    t = _Table(c.pooling, weight=self.ebc.embedding_bags[name].weight.detach())
                    tables.update({k: t for k in c.feature_names})
                return self._with_history_alias(tables)
            for module in self.ebc._emb_modules:  # torchrec.quant: fbgemm IntNBit table-batched modules
                tbe = getattr(module, "_emb_module", module)
                for spec, (q, ss) in zip(
                    tbe.embedding_specs, tbe.split_embedding_weights(split_scale_shifts=True), strict=True
                ):
                    c = configs[spec[0]]
                    if q.dtype != torch.uint8 or ss is None:
                        return None
                    sb = ss.contiguous().view(torch.float16).float()  # per row: fp16 scale, fp16 bias
                    t = _Table(
                        c.pooling,
                        q=q[:, : c.embedding_dim],
                        scale=sb[:, 0:1].contiguous(),
                        bias=sb[:, 1:2].contiguous(),
                    )
                    tables.update({k: t for k in c.feature_names})
        except (AttributeError, KeyError, TypeError, ValueError, RuntimeError):
            return None
        ebc_keys = [k for c in configs.values() for k in c.feature_names]
        if set(tables) != set(ebc_keys) or not self._tables_agree(tables, ebc_keys):
            return None
        return self._with_history_alias(tables)

    def _with_history_alias(self, tables: dict[str, _Table]) -> dict[str, _Table]:
        """With target attention the collection reads the history through position slots of the item table:
        the scorer reads ``recent_items`` rows from that table directly (slot names dropped)."""
        if self.attention is None:
            return tables
        keep = {k: t for k, t in tables.items() if k in self.keys}
        keep[HISTORY_KEY] = tables[QUERY_KEY]
        return keep

    def _tables_agree(self, tables: dict[str, _Table], keys: list[str]) -> bool:
        """Probe: our reads of the int8 rows pool to what the quantized collection itself returns."""
        B = 3
        vals = {k: torch.arange(2 * B, dtype=torch.int64) % max(1, int(tables[k].num_rows)) for k in keys}
        lens = {k: torch.full((B,), 2, dtype=torch.int32) for k in keys}
        kjt = KeyedJaggedTensor(
            keys=keys,
            values=torch.cat([vals[k] for k in keys]),
            lengths=torch.cat([lens[k] for k in keys]),
            stride=B,
        )
        with torch.inference_mode():
            ref = self.ebc(kjt).to_dict()
            return all(
                torch.allclose(tables[k].pooled(vals[k], lens[k], B), ref[k].float(), atol=1e-4, rtol=1e-4)
                for k in keys
            )

    def _lookup(
        self, keys: list[str], values: dict[str, torch.Tensor], lengths: dict[str, torch.Tensor], B: int
    ) -> torch.Tensor:
        """Pooled embeddings of ``keys`` for B rows: (B, len(keys), D)."""
        if self._tables is not None:  # straight to the tables: no KJT for a handful of lookups
            cols = [self._tables[k].pooled(values[k], lengths[k], B) for k in keys]
            return torch.stack(cols, dim=1).to(self.device)
        # unknown collection: a KJT with all its keys; absent keys are empty bags
        vals, lens = [], []
        empty_v, empty_l = torch.zeros(0, dtype=torch.int64), torch.zeros(B, dtype=torch.int32)
        for k in self.keys:
            vals.append(values[k] if k in keys else empty_v)
            lens.append(lengths[k] if k in keys else empty_l)
        kjt = KeyedJaggedTensor(keys=self.keys, values=torch.cat(vals), lengths=torch.cat(lens), stride=B)
        pooled = self.ebc(kjt.to(self._ebc_device)).to_dict()
        return torch.stack([pooled[k] for k in keys], dim=1).to(self.device, torch.float32)

    @property
    def _ebc_device(self) -> torch.device:
        return torch.device("cpu") if self.precision == "int8" else self.device

    def _one_user(self, user: UserFeatures) -> torch.Tensor:
        """(1, Fu, D) for one user: a handful of row reads, no KJT or offsets to build."""
        cols = [self._tables[k].pooled(user.sparse[k].reshape(-1), None, 1) for k in self._user_keys]
        return torch.stack(cols, dim=1).to(self.device)

    def _item_embeddings(self, items: ItemFeatures, chunk: int = 65_536) -> torch.Tensor:
        out = []
        M = len(items)
        for s in range(0, M, chunk):
            e = min(s + chunk, M)
            vals = {k: self._item_sparse_cpu[k][s:e] for k in self._item_keys}
            lens = {k: torch.ones(e - s, dtype=torch.int32) for k in self._item_keys}
            out.append(self._lookup(self._item_keys, vals, lens, e - s))
        return torch.cat(out) if out else torch.zeros(0, len(self._item_keys), self.D, device=self.device)

    def user_history(self, users: Sequence[UserFeatures]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Target attention only (else None): each user's last N history rows, most recent first, read once per
        user: ((U, N, D) rows, zeros on padding; (U, N) mask)."""
        if self.attention is None:
            return None
        bags = [u.sparse[HISTORY_KEY].reshape(-1).to(torch.int64).cpu() for u in users]
        lengths = torch.tensor([len(b) for b in bags], dtype=torch.int64)
        slots, mask = recency_slots(torch.cat(bags), lengths, self.history_length)
        mask = mask.to(self.device)
        rows = self._tables[HISTORY_KEY].rows(slots.reshape(-1).to(self._tables[HISTORY_KEY].device))
        rows = rows.view(len(users), self.history_length, -1).to(self.device, torch.float32)
        return rows * mask.unsqueeze(-1), mask

    def user_embeddings(self, users: Sequence[UserFeatures]) -> torch.Tensor:
        """(U, Fu, D): every user's side, looked up once per user."""
        if len(users) == 1 and self._tables is not None:
            return self._one_user(users[0])
        vals = {k: torch.cat([u.sparse[k].reshape(-1).to(torch.int64).cpu() for u in users]) for k in self._user_keys}
        lens = {k: torch.tensor([u.sparse[k].numel() for u in users], dtype=torch.int32) for k in self._user_keys}
        return self._lookup(self._user_keys, vals, lens, len(users))

    # -- MLP / interaction stage ------------------------------------------------------------------

    def _generic_rows(
        self,
        ue: torch.Tensor,
        ud: torch.Tensor,
        items: torch.Tensor,
        pair: torch.Tensor,
        history: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Any DLRM variant: assemble (R, F, D) rows from the caches and run the model's own archs. Logits (R,).
        ``history`` (target attention): this user's ((1, N, D) rows, (1, N) mask); each row's interest vector
        takes the ``recent_items`` place."""
        R = items.shape[0]
        item_rows = self.item_emb.index_select(0, items)  # (R, Fi, D)
        user_rows = ue.expand(R, -1, -1)
        if history is not None:
            query = item_rows[:, self._item_keys.index(QUERY_KEY)]
            interest = self.attention(query, history[0], history[1])  # (R, D)
            h = self._user_keys.index(HISTORY_KEY)
            user_rows = torch.cat([user_rows[:, :h], interest.unsqueeze(1), user_rows[:, h + 1 :]], dim=1)
        sparse = torch.cat([user_rows, item_rows], dim=1).index_select(1, self._perm)
        dense = torch.cat([ud.expand(R, -1), self.item_dense.index_select(0, items), pair], dim=1)
        dense = dense.index_select(1, self._dense_perm)
        d = self.dlrm.dense_arch(dense)
        return self.dlrm.over_arch(self.dlrm.inter_arch(dense_features=d, sparse_features=sparse)).reshape(-1)

    def _interest(self, items: torch.Tensor, history: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor | None:
        """Target attention: (Uc, n, D) interest vectors of Uc users' candidate rows ``items`` (Uc, n)."""
        if history is None:
            return None
        q = self.item_emb[:, self._item_keys.index(QUERY_KEY)]
        return torch.stack(
            [
                self.attention(q.index_select(0, items[u]), history[0][u : u + 1], history[1][u : u + 1])
                for u in range(items.shape[0])
            ]
        )

    def _score_users(
        self,
        ue: torch.Tensor,
        ud: torch.Tensor,
        items: torch.Tensor,
        pair: torch.Tensor,
        history: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits (Uc, N) for Uc users that each have N rows. items (Uc, N) catalogue rows, pair (Uc, N, P);
        history: :meth:`user_history` of those Uc users (target attention)."""
        if self.folded is not None:
            state = self.folded.user_state(ue, ud)
            N = items.shape[1]
            step = max(1, self.row_block // max(1, items.shape[0]))  # keep a block's activations cache-sized

            def block(s: int, e: int) -> torch.Tensor:
                its = items[:, s:e]
                return self.folded.rows(ue, state, self.item_cache, its, pair[:, s:e], self._interest(its, history))

            out = block(0, N) if step >= N else torch.cat([block(s, s + step) for s in range(0, N, step)], dim=1)
        else:
            out = torch.stack(
                [
                    self._generic_rows(
                        ue[u : u + 1],
                        ud[u : u + 1],
                        items[u],
                        pair[u],
                        None if history is None else (history[0][u : u + 1], history[1][u : u + 1]),
                    )
                    for u in range(ue.shape[0])
                ]
            )
        if self._prior is not None:  # a small log's model: b * its place column (a is in the last bias)
            b, j = self._prior
            out.add_(pair[:, :, j], alpha=b)
        return out

    # -- public -----------------------------------------------------------------------------------

    def score(
        self,
        user: UserFeatures,
        items: torch.Tensor | np.ndarray,
        pair_dense: torch.Tensor | None = None,
        *,
        timings: list[ScoreTimings] | None = None,
    ) -> torch.Tensor:
        """Logits (N,) of one user's N candidates (catalogue rows); ``pair_dense`` (N, len(PAIR_DENSE)).

        Pass a list as ``timings`` to have the stage split appended to it.
        """
        items = torch.as_tensor(items, dtype=torch.int64).to(self.device)
        N = items.shape[0]
        with torch.inference_mode():
            t0 = time.perf_counter_ns()
            ue = self.user_embeddings([user])
            hist = self.user_history([user])
            ud = user.dense.to(self.device, torch.float32).reshape(1, -1)
            if timings is not None:
                _sync(self.device)
            t1 = time.perf_counter_ns()
            pair = self.default_pair.expand(N, -1) if pair_dense is None else pair_dense.to(self.device, torch.float32)
            out = self._score_users(ue, ud, items.reshape(1, N), pair.reshape(1, N, -1), hist).reshape(N)
            if timings is not None:
                _sync(self.device)
                timings.append(ScoreTimings(t1 - t0, time.perf_counter_ns() - t1))
        return out.float().cpu()

    def rank(
        self,
        user: UserFeatures,
        items: torch.Tensor | np.ndarray,
        pair_dense: torch.Tensor | None = None,
        k: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(catalogue rows, logits) of the candidates, best first, at most ``k``."""
        items = np.asarray(items, dtype=np.int64)
        scores = self.score(user, items, pair_dense).numpy()
        order = np.argsort(-scores, kind="stable")[:k]
        return items[order], scores[order]

    def score_batch(
        self,
        users: Sequence[UserFeatures],
        items: Sequence[torch.Tensor] | torch.Tensor | None = None,
        pair_dense: Sequence[torch.Tensor | None] | None = None,
        *,
        chunk_rows: int = 8192,
        timings: list[ScoreTimings] | None = None,
    ) -> list[torch.Tensor]:
        """Logits for many users: one (N_u,) tensor per user.

        ``items``: one tensor of catalogue rows shared by all users, or one per user, or None for the
        whole catalogue. ``pair_dense``: None, or per user an (N_u, P) tensor (or None). Each user's side
        is looked up once (one call for all users); users with equally many rows are scored together
        in chunks of about ``chunk_rows`` rows.
        """
        U = len(users)
        if U == 0:
            return []
        if items is None:
            items = torch.arange(self.num_items)
        shared = isinstance(items, torch.Tensor)
        per_user = [torch.as_tensor(items if shared else items[u], dtype=torch.int64) for u in range(U)]
        pairs = [None] * U if pair_dense is None else list(pair_dense)
        out: list[torch.Tensor | None] = [None] * U
        with torch.inference_mode():
            t0 = time.perf_counter_ns()
            ue_all = self.user_embeddings(users)
            hist_all = self.user_history(users)
            ud_all = torch.stack([u.dense.reshape(-1).float() for u in users]).to(self.device)
            _sync(self.device)
            t1 = time.perf_counter_ns()
            by_len: dict[int, list[int]] = {}
            for u, it in enumerate(per_user):
                by_len.setdefault(len(it), []).append(u)
            for n, group in by_len.items():
                if n == 0:
                    for u in group:
                        out[u] = torch.zeros(0)
                    continue
                step = max(1, chunk_rows // n)
                for s in range(0, len(group), step):
                    g = group[s : s + step]
                    idx = torch.tensor(g, device=self.device)
                    its = torch.stack([per_user[u] for u in g]).to(self.device)
                    pr = torch.stack(
                        [
                            self.default_pair.expand(n, -1) if pairs[u] is None else pairs[u].float().to(self.device)
                            for u in g
                        ]
                    )
                    hist = None if hist_all is None else (hist_all[0][idx], hist_all[1][idx])
                    res = (
                        self._score_users(ue_all.index_select(0, idx), ud_all.index_select(0, idx), its, pr, hist)
                        .float()
                        .cpu()
                    )
                    for j, u in enumerate(g):
                        out[u] = res[j]
            _sync(self.device)
            t2 = time.perf_counter_ns()
        if timings is not None:
            timings.append(ScoreTimings(t1 - t0, t2 - t1))
        return out  # type: ignore[return-value]

    # -- reference --------------------------------------------------------------------------------

    def reference_batch(
        self, user: UserFeatures, items: torch.Tensor | np.ndarray, pair_dense: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, KeyedJaggedTensor]:
        """The plain DLRM input for one user's rows: (dense (N, F_dense), KJT with the user's side repeated per row).

        What a model without user-side reuse consumes: the benchmark's baseline and the tests' oracle.
        """
        items = torch.as_tensor(items, dtype=torch.int64).cpu()
        N = len(items)
        vals, lens = [], []
        for k in self.keys:
            if k in self._user_keys:
                v = user.sparse[k].reshape(-1).to(torch.int64).cpu()
                vals.append(v.repeat(N))
                lens.append(torch.full((N,), v.numel(), dtype=torch.int32))
            else:
                vals.append(self._item_sparse_cpu[k].index_select(0, items))
                lens.append(torch.ones(N, dtype=torch.int32))
        kjt = KeyedJaggedTensor(keys=self.keys, values=torch.cat(vals), lengths=torch.cat(lens), stride=N)
        pair = self.default_pair.cpu().expand(N, -1) if pair_dense is None else pair_dense.float().cpu()
        dense = torch.cat(
            [user.dense.reshape(1, -1).float().expand(N, -1), self.item_dense.cpu().index_select(0, items), pair], dim=1
        ).index_select(1, self._dense_perm.cpu())
        return dense, kjt


# -------------------------------------------------------------------------------------- from the registry


def model_from_artifact(artifact) -> tuple[nn.Module, object, object]:
    """(model in eval mode, FeatureSpace, Config) from a :class:`recommender.registry.Artifact`.

    Convention (what the trainer registers): ``weights={"model": Ranker.state_dict()}``,
    ``vocabularies=FeatureSpace.to_state()`` (extra keys allowed), ``config=Config.to_dict()``.

    Strict: the weights must fill the model the config describes exactly (no missing or extra tensor, every
    shape as built), and every floating-point tensor the artifact holds must be finite; anything else raises
    :class:`recommender.registry.ArtifactError` naming the tensor, so such a version is never promoted nor
    served (a NaN weight makes every score NaN, and a ranking of NaNs is arbitrary).
    """
    from recommender.config import Config
    from recommender.features import FeatureSpace, SchemaMismatch
    from recommender.model import build_model
    from recommender.registry import ArtifactError

    config = Config.from_dict(artifact.config)
    try:
        space = FeatureSpace.from_state(artifact.vocabularies)
    except SchemaMismatch as e:
        raise ArtifactError(f"model {artifact.version}: {e}", version=artifact.version, file="vocabularies") from e
    model = build_model(
        config.model, table_sizes=space.table_sizes(), table_features=space.table_features(), num_dense=space.num_dense
    )
    for name, state in artifact.weights.items():
        bad = _non_finite(state)
        if bad:
            raise ArtifactError(
                f"model {artifact.version}: weights.pt holds non-finite values (NaN or inf) in {name}.{bad}",
                version=artifact.version,
                file="weights.pt",
            )
    try:
        model.load_state_dict(artifact.weights["model"], strict=True)
    except (KeyError, RuntimeError, TypeError, AttributeError) as e:
        raise ArtifactError(
            f"model {artifact.version}: weights.pt does not fit the registered config ({e})",
            version=artifact.version,
            file="weights.pt",
        ) from e
    return model.eval(), space, config


def _non_finite(state) -> str | None:
    """The first key of ``state`` (a state dict) whose floating-point tensor holds a NaN or an inf."""
    if not isinstance(state, dict):
        return None
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return str(key)
    return None
