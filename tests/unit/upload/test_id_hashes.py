"""The compact repeated-id finder used by the upload's duplicate check."""

from __future__ import annotations

from airflow_provider_cm.pipelines.comments.id_hashes import IdHashes


def test_finds_every_repeated_hash_and_nothing_else():
    ids = IdHashes()
    for i in range(20_000):
        ids.add(f"c{i}")
    for again in ("c0", "c19999", "c777", "c777"):
        ids.add(again)
    assert len(ids) == 20_004
    assert ids.repeated() == {IdHashes.hash_of(c) for c in ("c0", "c19999", "c777")}


def test_no_repeats_in_unique_ids():
    ids = IdHashes()
    for i in range(5_000):
        ids.add(f"unique-{i}")
    assert ids.repeated() == frozenset()


def test_eight_bytes_per_id():
    ids = IdHashes()
    for i in range(100_000):
        ids.add(str(i))
    held = sum(part.buffer_info()[1] * part.itemsize for part in ids._parts)
    assert held == 8 * 100_000
