"""Remote photoplethysmography methods: classical (POS, CHROM, GREEN, ICA, LGI, PBV) and neural."""
