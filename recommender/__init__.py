"""DLRM recommender engine: pure torch + torchrec, no Django, no database."""
