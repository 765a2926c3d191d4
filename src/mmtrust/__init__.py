"""mmtrust: trustworthy face and multimodal perception in one PyTorch toolkit."""
__version__ = "0.1.0"
