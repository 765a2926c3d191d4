"""Single-cell multi-omics methods."""
