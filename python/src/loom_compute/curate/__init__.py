"""Curation: per-shard scoring jobs over raw WebDataset shards (docs/curation.md).

- `shards`: reads a raw shard's samples in tar order, good ones decoded, bad ones with a reason.
- `sidecar`: the score sidecar format (`SCORES/{shard_stem}.{scorer}.parquet`), written atomically.
- `runner`: splits the pending shards over ranks and writes one sidecar per shard.
- `clip_score`: image-text cosine from a transformers CLIP or SigLIP checkpoint.
"""
