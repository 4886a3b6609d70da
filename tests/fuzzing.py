"""Property-based fuzzing of the input readers: examples, mutations of real files, and the profiles.

``make test`` runs each reader's fuzz test on a small, derandomized number of examples (the same
ones every run, a few seconds per reader); ``make fuzz`` sets ``HYPOTHESIS_PROFILE=fuzz`` and
runs them on many random examples (``FUZZ_EXAMPLES`` per test, default 5,000).

A mutation of a real file is a list of edits on its bytes, drawn by hypothesis (so a failure
shrinks to the fewest, smallest edits): flip a byte, insert bytes (arbitrary ones, or awkward
ones such as a NUL, a byte order mark, a lone surrogate's UTF-8 form, deep nesting, a huge
number), delete a span, duplicate a span, cut the file short.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: ``default`` in ``make test``; ``fuzz`` in ``make fuzz``.
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5000"))

_SLOW_INPUT = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def fuzz_settings(examples: int) -> settings:
    """Settings of a reader's fuzz test: ``examples`` derandomized examples, or the fuzz profile's many random ones."""
    if PROFILE == "fuzz":
        return settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            derandomize=False,
            database=None,
            suppress_health_check=_SLOW_INPUT,
            print_blob=True,
        )
    return settings(
        max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=_SLOW_INPUT
    )


#: Bytes that break readers: NUL, byte order marks (UTF-8, UTF-16), a lone surrogate in UTF-8 and as a
#: JSON escape, bytes that are never UTF-8, a cut multi-byte character, line ends, deep nesting, huge
#: numbers, CSV quotes, mbox ``From`` lines, MIME boundaries and encoded words.
AWKWARD = [
    b"\x00",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xed\xa0\x80",
    b"\\ud800",
    b"\\udfff\\ud800",
    b"\xc3",
    b"\xff",
    b"\r",
    b"\r\n",
    b"\n",
    b"\n\n",
    b"[" * 100_000,
    b'{"a":' * 3000,
    b"1" * 5000,
    b"1e400",
    b"-1e99999",
    b"NaN",
    b'"',
    b'""',
    b",",
    b"\nFrom someone@example.com Mon Jan  1 00:00:00 2026\n",
    b"\n>From quoted\n",
    b"Content-Type: multipart/mixed; boundary=zz\n",
    b"\n--zz\n",
    b"\n--zz--\n",
    b"Content-Type: message/rfc822\n\n",
    b"Content-Transfer-Encoding: base64\n",
    b"Content-Transfer-Encoding: quoted-printable\n",
    b'charset="x-unknown-charset"',
    b"=?utf-8?b?/w==?=",
    b"=?x-unknown?q?=FF?=",
    b"Message-ID: <\xff\xfe@example.com>\n",
]


@st.composite
def mutated(draw: Any, samples: list[bytes], max_edits: int = 6) -> bytes:
    """A real sample with a few edits on its bytes."""
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(min_value=0, max_value=max_edits))):
        at = draw(st.integers(min_value=0, max_value=len(data)))
        edit = draw(st.integers(min_value=0, max_value=5))
        if edit == 0 and at < len(data):
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif edit == 1:
            data[at:at] = draw(st.sampled_from(AWKWARD))
        elif edit == 2:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif edit == 3:
            del data[at : at + draw(st.integers(min_value=1, max_value=64))]
        elif edit == 4:
            start = draw(st.integers(min_value=0, max_value=len(data)))
            data[at:at] = data[start : start + draw(st.integers(min_value=1, max_value=256))]
        else:
            del data[at:]  # cut short
    return bytes(data)
