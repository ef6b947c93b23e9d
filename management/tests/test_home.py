"""An Ion home left readable by other users is closed: home 0700, its entries 0600/0700 (#10)."""

from __future__ import annotations

import stat
from pathlib import Path

from ion.management.home import make_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_readable_home_and_its_entries_are_closed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "blobs" / "c1").mkdir(parents=True)
    (home / "meta.db").write_text("")
    (home / "blobs" / "c1" / "out.txt").write_text("secret")
    (home / "shared").symlink_to(tmp_path)
    for path in (home, home / "blobs", home / "blobs" / "c1"):
        path.chmod(0o755)
    (home / "meta.db").chmod(0o644)
    make_private(home)
    assert _mode(home) == 0o700 and _mode(home / "blobs") == 0o700
    assert _mode(home / "meta.db") == 0o600
    assert _mode(tmp_path) == stat.S_IMODE(tmp_path.stat().st_mode)  # a symlink's target: kept


def test_a_missing_home_is_made_private(tmp_path: Path) -> None:
    make_private(tmp_path / "new" / "home")
    assert _mode(tmp_path / "new" / "home") == 0o700
