"""Test-wide settings: a private cache folder, few threads, offline."""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    os.environ["MMTRUST_CACHE"] = str(tmp_path_factory.mktemp("mmtrust-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield


@pytest.fixture(scope="session")
def tiny_still_rppg(tmp_path_factory):
    """The tiny built-in rPPG set in the still domain (5 subjects x 10 s), built once per test session."""
    from mmtrust.data.synthetic_rppg import build_synthetic_rppg, make_config

    root = tmp_path_factory.mktemp("rppg-data") / "synth"
    build_synthetic_rppg(make_config("tiny", domain="still"), root=root, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_deepfake_root(tmp_path_factory):
    """The tiny built-in face-forgery set (synthetic-deepfake, preset tiny), built once per test session."""
    import mmtrust

    root = tmp_path_factory.mktemp("forgery-data") / "sd"
    mmtrust.load_dataset("synthetic-deepfake", root=str(root), split="train", preset="tiny", progress=False)
    return root
