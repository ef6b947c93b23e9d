"""The filesystem BlobStore passes the BlobStore contract and refuses keys that leave its root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ion.core import errors
from ion.core.backends.localfs.blobs import LocalBlobStore
from ion.core.ports.blobs import BlobStore
from ion.core.testing.blobs_contract import BlobStoreContract


class TestLocalBlobStore(BlobStoreContract):
    @pytest.fixture
    async def blobs(self, tmp_path: Path) -> AsyncIterator[BlobStore]:
        store = LocalBlobStore(tmp_path / "blobs")
        yield store
        await store.aclose()


@pytest.mark.parametrize("key", ["../x", "a/../../x", "", "/", "a/./b"])
def test_keys_that_leave_the_root_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(errors.ValidationError):
        LocalBlobStore(tmp_path).path_of(key)
