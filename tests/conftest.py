"""Test-wide settings: a private cache folder, few threads, offline."""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    os.environ["MMTRUST_CACHE"] = str(tmp_path_factory.mktemp("mmtrust-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield
