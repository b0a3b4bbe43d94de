import time, sys
from recommender.data import interactions_from_retail_log
from recommender.train import train_on_interactions
from recommender.config import Config
d = interactions_from_retail_log("/work/shared/data/ta_feng/ta_feng.csv.zip", limit=50000)
for ep, bs, lr in ((2, 1024, 0.05), (1, 1024, 0.1), (3, 2048, 0.1)):
    cfg = Config(); cfg.data.positive_weights={"purchase":1.0}; cfg.train.epochs=ep; cfg.train.batch_size=bs; cfg.train.embedding_lr=lr; cfg.train.progress=False; cfg.train.threads=1
    t=time.time(); r = train_on_interactions(d, cfg)
    print(ep, bs, lr, r.metrics["valid_auc"], r.metrics["train_loss"], r.metrics["train_examples"], round(time.time()-t,1), r.examples_per_s)
