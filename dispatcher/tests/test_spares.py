"""Spare job directories: made ahead of need, and finished ones emptied back into spares."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from ion.core.contract import JobLayout
from ion.dispatcher.executors._spares import SparePool
from ion.handler.prepare import build_layout


def pool_in(jobs: Path, size: int = 4) -> SparePool:
    return SparePool(jobs, size=size, make_layout=lambda d: build_layout(JobLayout(d / "ion")))


def tree(root: Path) -> list[tuple[str, int, int]]:
    """Every path under `root` with its mode and size."""
    out = []
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(base, name))
            out.append((os.path.relpath(os.path.join(base, name), root), st.st_mode, st.st_size))
    return sorted(out)


async def ready(pool: SparePool) -> Path:
    """A spare, once the pool has made some."""
    for _ in range(500):
        spare = pool.take()
        if spare is not None:
            return spare
        await asyncio.sleep(0.01)
    raise AssertionError("no spare was made")


async def recycled(pool: SparePool, job: Path) -> Path | None:
    """Recycle `job` into an otherwise empty pool; the spare it became, if any."""
    if pool._filler is not None:
        await pool._filler
    pool._ready.clear()  # make room (these spares stay on disk until the pool closes)
    assert pool.recycle(job)
    assert not job.exists(), "a recycled job leaves the jobs directory at once"
    await asyncio.gather(*pool._discards)
    return pool._ready.pop() if pool._ready else None


async def test_a_finished_job_s_directory_becomes_a_spare_like_a_new_one(tmp_path: Path) -> None:
    pool = pool_in(tmp_path)
    try:
        fresh = await ready(pool)
        expected = tree(fresh)
        job = tmp_path / "job-1"
        os.rename(fresh, job)
        for name, text in {
            "job.json": '{"job": 1}',
            "module.lock": '{"token": "t"}',
            "module.log": "output\n",
            "result.json": "{}",
            "run-t.started": "12",
            "run-t.exit": "0",
            "ion/out/events/e.json": "[]",
            "ion/out/data/f.txt": "x",
            "ion/out/insights.json": "[]",
            "ion/in/eventmeta.json": "[]",
            "ion/in/data/a.bin": "y",
        }.items():
            (job / name).write_text(text)
        (job / "ion/in/data/link").symlink_to("/etc/passwd")
        spare = await recycled(pool, job)
        assert spare is not None
        assert tree(spare) == expected
        assert Path("/etc/passwd").exists()
    finally:
        await pool.aclose()


async def test_a_job_directory_that_is_not_plain_is_removed_not_recycled(tmp_path: Path) -> None:
    pool = pool_in(tmp_path)
    try:
        for spoil in (
            lambda job: (job / "ion/out/data/sub").mkdir(),
            lambda job: (job / "ion/out/events").chmod(0o500),
            lambda job: (job / "extra").mkdir(),
        ):
            job = tmp_path / "job"
            os.rename(await ready(pool), job)
            spoil(job)
            assert await recycled(pool, job) is None
            assert not list((tmp_path / ".spare").glob("*/*/ion/out/data/sub"))
    finally:
        await pool.aclose()
    assert not list((tmp_path / ".spare").iterdir()), "a closed pool leaves no spares behind"


async def test_spares_of_a_process_that_is_gone_are_removed(tmp_path: Path) -> None:
    gone = tmp_path / ".spare" / "12345-dead"
    (gone / "abc").mkdir(parents=True)
    (gone / "owner.lock").write_text("")  # nobody holds it
    pool = pool_in(tmp_path)
    try:
        await ready(pool)
        assert not gone.exists()
    finally:
        await pool.aclose()


async def test_spares_recycle_under_a_umask_set_after_import(tmp_path: Path) -> None:
    """`ion up` makes its home private (umask 077) after this module was imported."""
    before = os.umask(0o077)
    try:
        pool = pool_in(tmp_path)
        try:
            fresh = await ready(pool)
            job = tmp_path / "job-1"
            os.rename(fresh, job)
            (job / "ion/out/data/f.txt").write_text("x")
            spare = await recycled(pool, job)
            assert spare is not None, "a spare made under the umask of the time was refused"
            assert not (spare / "ion/out/data/f.txt").exists()
        finally:
            await pool.aclose()
    finally:
        os.umask(before)
