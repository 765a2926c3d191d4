"""Readers, face cropping, transforms, benchmark dataset loaders and built-in data generators."""
