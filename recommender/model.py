"""The ranking network: torchrec's `DLRM` / `DLRM_DCN` over an `EmbeddingBagCollection`.

Notation: B batch, F sparse features (keys of the KJT), D embedding dim, F_dense dense features.

* :func:`build_model` -> :class:`Ranker` (returns logits, (B,)).
* :class:`RankerTrain` owns the loss (weighted BCE) — the model never sees labels.
* :meth:`Ranker.embed` / :meth:`Ranker.score_embedded` split the forward at the embedding lookups so a
  server can look up a user's side once and reuse it across candidates.

``fused=True`` builds the embeddings as torchrec's ``FusedEmbeddingBagCollection`` (FBGEMM table-batched
kernel with row-wise Adagrad applied inside backward, the torchrec way on one process). Its state dict has
the same keys and shapes as the plain ``EmbeddingBagCollection``, so weights trained fused load into an
unfused model for serving / quantisation.

``ModelConfig.history_encoder`` picks how the customer's recent items reach the interaction: ``"mean"``, the
item table's MEAN-pooled bag; ``"din"``, a target-attention interest vector per candidate
(:class:`recommender.attention.HistoryAttentionSparseArch` in place of torchrec's ``SparseArch``). Both have
the same embedding tables (same state-dict keys); din adds the attention's few parameters.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torchrec.models.dlrm import DLRM, DLRM_DCN, InteractionArch
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recommender.attention import HISTORY_KEY, QUERY_KEY, HistoryAttentionSparseArch, slot_keys
from recommender.config import ModelConfig, TrainConfig
from recommender.features import DENSE_FEATURES, PRIOR_FEATURE, Batch


def _not_fx_tracing_notice(record: logging.LogRecord) -> bool:
    # torchrec's modules ask torch.fx whether they are being traced on every forward; torch answers the first
    # time with a warning meant for torch's own callers (the function's two meanings), once per process: in
    # a worker's log or `make demo`'s it reads as a fault of the model. Only that message is dropped.
    return not str(record.msg).startswith("is_fx_tracing will return true")


logging.getLogger("torch.fx._symbolic_trace").addFilter(_not_fx_tracing_notice)


def table_configs(
    table_sizes: dict[str, int], table_features: dict[str, list[str]], embedding_dim: int
) -> list[EmbeddingBagConfig]:
    """One table per entry of ``table_sizes``; a table shared by several keys (item_id + recent_items) pools
    by MEAN so a long bag does not outweigh a single id.

    SUM tables come first, MEAN tables last: torchrec 1.8's ``FusedEmbeddingBagCollection`` concatenates its
    outputs grouped by pooling type but labels them in table order, so with mixed pooling the tables must
    already be grouped or the embeddings come back under the wrong keys (seen here: inverted AUC)."""
    configs = [
        EmbeddingBagConfig(
            name=f"t_{name}",
            embedding_dim=embedding_dim,
            num_embeddings=int(rows),
            feature_names=list(table_features[name]),
            pooling=PoolingType.MEAN if len(table_features[name]) > 1 else PoolingType.SUM,
        )
        for name, rows in table_sizes.items()
    ]
    return sorted(configs, key=lambda c: c.pooling != PoolingType.SUM)  # stable: SUM first


class TrainingInteractionArch(InteractionArch):
    """torchrec's ``InteractionArch`` with the same output, computed for training: the upper triangle of the
    pairwise dot products is taken with one ``index_select`` on the flattened (B, (F+1)^2) matrix, whose
    backward is an ``index_add`` instead of the advanced-indexing ``index_put`` (about a quarter off the
    interaction's forward + backward on CPU). No parameters, so state dicts are unchanged; serving keeps the
    stock class (``recommender.serving`` folds it)."""

    def __init__(self, num_sparse_features: int) -> None:
        super().__init__(num_sparse_features)
        n = self.F + 1
        self.register_buffer("triu_flat", self.triu_indices[0] * n + self.triu_indices[1], persistent=False)

    def forward(self, dense_features: torch.Tensor, sparse_features: torch.Tensor) -> torch.Tensor:
        if self.F <= 0:
            return dense_features
        B = dense_features.shape[0]
        combined = torch.cat((dense_features.unsqueeze(1), sparse_features), dim=1)  # B x (F+1) x D
        dots = torch.bmm(combined, combined.transpose(1, 2)).reshape(B, -1).index_select(1, self.triu_flat)
        return torch.cat((dense_features, dots), dim=1)


class Ranker(nn.Module):
    """DLRM (or DLRM-DCN) scoring (user, item, context) rows.

    forward(dense (B, F_dense) float32, sparse KJT stride B) -> logits (B,)

    The logit is the DLRM's output plus a fixed **stage-1 prior**, ``stage1_prior[0] + stage1_prior[1] *
    dense[:, PRIOR_FEATURE]``: the log-odds of a positive at that place in stage 1's order
    (:func:`recommender.train.stage1_teacher`, fitted on the training labels; zeros when the rows are not
    stage-1 candidates). The network learns departures from stage 1's order rather than the order itself:
    with its last layer started at zero the untrained ranker *is* stage 1's order, and a small log moves it
    only as far as its labels (and early stopping) support. A buffer, not a parameter: the optimiser never
    changes it, and it travels in the state dict. Set on a small log only (:func:`recommender.train.train`:
    a large log fits the whole network to stage 1's order instead, which measured better there).
    """

    def __init__(self, dlrm: DLRM, feature_names: list[str]):
        super().__init__()
        self.dlrm = dlrm
        self.feature_names = feature_names  # SparseArch order (tables in order, then their keys)
        self.prior_column = DENSE_FEATURES.index(PRIOR_FEATURE)
        self.register_buffer("stage1_prior", torch.zeros(2))

    def prior(self, dense_features: torch.Tensor) -> torch.Tensor:
        """(B,) the stage-1 prior of rows with these dense features."""
        return self.stage1_prior[0] + self.stage1_prior[1] * dense_features[:, self.prior_column]

    def set_prior(self, a: float, b: float) -> None:
        """Use the stage-1 prior a + b * log1p(place) and start the over arch's last layer at zero (the
        untrained ranker then scores exactly the prior)."""
        self.stage1_prior.copy_(torch.tensor([a, b], dtype=self.stage1_prior.dtype))
        final = self.dlrm.over_arch.model[-1]
        with torch.no_grad():
            final.weight.zero_()
            final.bias.zero_()

    def forward(self, dense_features: torch.Tensor, sparse_features: KeyedJaggedTensor) -> torch.Tensor:
        return self.dlrm(dense_features, sparse_features).squeeze(-1) + self.prior(dense_features)

    @property
    def history_attention(self) -> HistoryAttentionSparseArch | None:
        """The target-attention sparse arch when ``history_encoder`` is ``"din"``, else None."""
        arch = self.dlrm.sparse_arch
        return arch if isinstance(arch, HistoryAttentionSparseArch) else None

    def embed(self, sparse_features: KeyedJaggedTensor) -> dict[str, torch.Tensor]:
        """Pooled embeddings of the KJT's keys: key -> (B, D). With target attention, ``recent_items`` is the
        history itself, (B, N, D) rows most recent first, and ``recent_items.mask`` (B, N) marks real ones:
        the interest depends on the candidate, so :meth:`score_embedded` computes it."""
        din = self.history_attention
        if din is None:
            return self.dlrm.sparse_arch.embedding_bag_collection(sparse_features).to_dict()
        kjt, mask = din.slot_features(sparse_features)
        pooled = din.embedding_bag_collection(kjt).to_dict()
        out = {k: v for k, v in pooled.items() if k not in din.slots}
        out[HISTORY_KEY] = torch.stack([pooled[s] for s in din.slots], dim=1)
        out[HISTORY_KEY + ".mask"] = mask
        return out

    def score_embedded(self, dense_features: torch.Tensor, embedded: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits from dense features (B, F_dense) and pooled embeddings key -> (B, D) (or (1, D), broadcast
        to B: that is how one user's side is reused across B candidates). Same result as ``forward``."""
        B = dense_features.shape[0]
        din = self.history_attention
        if din is not None:  # one user's history (1, N, D) attends from each of the B candidates
            query = embedded[QUERY_KEY].expand(B, -1)
            interest = din.attention(query, embedded[HISTORY_KEY], embedded[HISTORY_KEY + ".mask"])
            embedded = {**embedded, HISTORY_KEY: interest}
        sparse = torch.stack([embedded[k].expand(B, -1) for k in self.feature_names], dim=1)  # B x F x D
        d = self.dlrm.dense_arch(dense_features)  # B x D
        x = self.dlrm.inter_arch(dense_features=d, sparse_features=sparse)
        return self.dlrm.over_arch(x).squeeze(-1) + self.prior(dense_features)


def build_model(
    config: ModelConfig,
    *,
    table_sizes: dict[str, int],
    table_features: dict[str, list[str]],
    num_dense: int,
    device: torch.device | str = "cpu",
    fused: TrainConfig | None = None,
) -> Ranker:
    """DLRM or DLRM_DCN per ``config.arch``. With ``fused`` (a TrainConfig) the tables are a
    FusedEmbeddingBagCollection updated by row-wise Adagrad at ``fused.embedding_lr`` inside backward."""
    device = torch.device(device)
    tables = table_configs(table_sizes, table_features, config.embedding_dim)
    names = [k for t in tables for k in t.feature_names]  # the interaction's order
    din = config.history_encoder == "din"
    if din:  # the item table is read by item_id and by one single-row feature per history position
        table_features = {
            t: ([*(k for k in keys if k != HISTORY_KEY), *slot_keys(config.history_length)] if HISTORY_KEY in keys
                else keys)
            for t, keys in table_features.items()
        }  # fmt: skip
    lookup_tables = table_configs(table_sizes, table_features, config.embedding_dim) if din else tables
    if fused is not None:
        from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
        from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

        ebc = FusedEmbeddingBagCollection(
            tables=lookup_tables,
            optimizer_type=RowWiseAdagrad,
            optimizer_kwargs={"lr": fused.embedding_lr, "eps": 1e-8},
            device=device,
        )
    else:
        ebc = EmbeddingBagCollection(tables=lookup_tables, device=device)
    common = dict(
        # din: the DLRM is sized on the interaction's keys (a table-less stand-in), then reads through attention
        embedding_bag_collection=EmbeddingBagCollection(tables=tables, device=torch.device("meta")) if din else ebc,
        dense_in_features=num_dense,
        dense_arch_layer_sizes=list(config.dense_arch),
        over_arch_layer_sizes=list(config.over_arch),
        dense_device=device,
    )
    if config.arch == "dlrm_dcn":
        dlrm: DLRM = DLRM_DCN(**common, dcn_num_layers=config.dcn_num_layers, dcn_low_rank_dim=config.dcn_low_rank_dim)
    else:
        dlrm = DLRM(**common)
        if fused is not None:  # training copy only; same outputs, cheaper backward
            dlrm.inter_arch = TrainingInteractionArch(dlrm.inter_arch.F).to(device)
    if din:
        dlrm.sparse_arch = HistoryAttentionSparseArch(ebc, names, config.history_length)
    return Ranker(dlrm, names).to(device)


def dense_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters outside the embedding tables (the MLPs / cross net), for Adam."""
    return [p for n, p in model.named_parameters() if "embedding_bag" not in n]


def embedding_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if "embedding_bag" in n]


class RankerTrain(nn.Module):
    """Training wrapper that owns the loss: weighted binary cross-entropy on logits.

    forward(batch) -> (loss scalar, logits (B,) detached)
    """

    def __init__(self, model: Ranker):
        super().__init__()
        self.model = model
        self.loss_fn = nn.BCEWithLogitsLoss(reduction="none")

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(batch.dense_features, batch.sparse_features)
        per_row = self.loss_fn(logits, batch.labels)
        loss = (per_row * batch.weights).sum() / batch.weights.sum().clamp_min(1e-12)
        return loss, logits.detach()
