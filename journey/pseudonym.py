"""Keyed pseudonyms for patient identifiers (SPEC section 5).

``patient_id`` never leaves the edge of the pipeline in clear: it becomes the hex
HMAC-SHA256 of the identifier under a secret key. The same key gives the same
pseudonym, so a patient's visits still join up; without the key the pseudonym cannot
be reversed or recomputed from a guessed identifier.

>>> pseudonymize = Pseudonymizer(b"k" * 32)
>>> pseudonymize("MRN-0001") == pseudonymize("MRN-0001"), len(pseudonymize("MRN-0001"))
(True, 64)
"""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymizer:
    __slots__ = ("_key", "_cache", "_cache_size")

    def __init__(self, key: bytes, cache_size: int = 100_000):
        if not key:
            raise ValueError("the pseudonym key must not be empty")
        self._key = key
        # Patients recur across many events; a bounded cache saves most HMACs.
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size

    def __call__(self, patient_id: str) -> str:
        cached = self._cache.get(patient_id)
        if cached is None:
            cached = hmac.new(self._key, patient_id.encode(), hashlib.sha256).hexdigest()
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[patient_id] = cached
        return cached
