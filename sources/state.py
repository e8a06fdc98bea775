"""Small bounded state with staged writes: nothing is remembered until ``commit``.

>>> store = BoundedStore(max_items=2)
>>> stage = store.stage()
>>> stage.set("a1", 1); stage.get("a1"), store.get("a1")
(1, None)
>>> stage.commit(); store.get("a1")
1
>>> for key in ("a2", "a3"): store.set(key, 0)
>>> store.get("a1") is None  # the least recently used key went first
True
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Generic, TypeVar

V = TypeVar("V")
_MISSING: Any = object()


class BoundedStore(Generic[V]):
    """A least-recently-used dict of at most ``max_items`` keys."""

    def __init__(self, max_items: int = 100_000) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, V] = OrderedDict()

    def get(self, key: str) -> V | None:
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def set(self, key: str, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def stage(self) -> Staged[V]:
        return Staged(self)


class Staged(Generic[V]):
    """Writes kept aside from a :class:`BoundedStore` until :meth:`commit`."""

    def __init__(self, store: BoundedStore[V]) -> None:
        self.store = store
        self.pending: dict[str, V] = {}

    def get(self, key: str) -> V | None:
        value = self.pending.get(key, _MISSING)
        return self.store.get(key) if value is _MISSING else value

    def set(self, key: str, value: V) -> None:
        self.pending[key] = value

    def commit(self) -> None:
        for key, value in self.pending.items():
            self.store.set(key, value)
        self.pending.clear()
