"""Finding repeated comment ids in a file of any size with 8 bytes per id.

An upload refuses a file that holds an id twice (the later line would silently replace the
earlier comment). Keeping every id in a ``dict`` costs about 100 bytes per id, 100 MB for a
million; :class:`IdHashes` keeps only a 64-bit hash of each id, in compact arrays, and names the
hashes seen more than once. Equal hashes do not prove equal ids (two different ids collide with a
probability of about ``n² / 2⁶⁵``: one in 37 million for a million ids), so a caller that gets
any back confirms them exactly with the ids themselves (see :meth:`IdHashes.repeated`).
"""

from __future__ import annotations

from array import array
from itertools import pairwise

#: Hashes are kept in 2**_PART_BITS arrays by their top bits, so that sorting one part at a time
#: needs a temporary list of 1/64 of the ids (sorting all of them at once would take a Python
#: list of a million ints, about 40 MB).
_PART_BITS = 6
_SHIFT = 64 - _PART_BITS
_MASK = (1 << 64) - 1


class IdHashes:
    """64-bit hashes of the ids seen so far: 8 bytes per id."""

    def __init__(self) -> None:
        self._parts = [array("Q") for _ in range(1 << _PART_BITS)]

    @staticmethod
    def hash_of(comment_id: str) -> int:
        """The 64-bit hash of an id, the same for equal ids within one process."""
        return hash(comment_id) & _MASK

    def add(self, comment_id: str) -> None:
        value = self.hash_of(comment_id)
        self._parts[value >> _SHIFT].append(value)

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts)

    def repeated(self) -> frozenset[int]:
        """The hashes added more than once (each part is sorted, then equal neighbours found).

        Every repeated id has its hash here; a hash here may also come from two different ids
        that happen to collide, so check the ids before calling them duplicates.
        """
        found: set[int] = set()
        for part in self._parts:
            if len(part) < 2:
                continue
            ordered = sorted(part)
            found.update(a for a, b in pairwise(ordered) if a == b)
        return frozenset(found)
