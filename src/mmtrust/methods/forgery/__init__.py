"""Face-forgery detectors: DTN and its baselines (EfficientNet-Lite0, plain ViT)."""
