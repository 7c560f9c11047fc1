"""A small per-process cache with expiry, for answers that may be a few seconds old (tokens, access)."""

import threading
import time
from collections import OrderedDict


class TTLCache:
    """Thread-safe LRU map whose entries expire after ``ttl`` seconds (ttl 0 disables it)."""

    def __init__(self, ttl: float, size: int = 10_000):
        self.ttl, self.size = ttl, size
        self.data: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key):
        if self.ttl <= 0:
            return None
        with self.lock:
            item = self.data.get(key)
            if item is None:
                return None
            expires, value = item
            if expires < time.monotonic():
                del self.data[key]
                return None
            return value

    def put(self, key, value) -> None:
        if self.ttl <= 0:
            return
        with self.lock:
            self.data[key] = (time.monotonic() + self.ttl, value)
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.data.clear()
