"""Login attempt limits, in memory: per client address and for the whole box.

A guessing attacker from one address is stopped by the first limit; many addresses
together by the second, which also locks the owner out for a while: that is the
price of not having an account lockout that anyone could trigger forever.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class LoginLimiter:
    def __init__(self, per_client: int = 5, overall: int = 30, window: float = 300.0,
                 clock=time.monotonic) -> None:
        self.per_client = per_client
        self.overall = overall
        self.window = window
        self.clock = clock
        self._by_client: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()
        self._lock = threading.Lock()

    def _expire(self, q: deque[float], now: float) -> None:
        while q and q[0] <= now - self.window:
            q.popleft()

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try again; 0 when it may try now."""
        now = self.clock()
        with self._lock:
            self._expire(self._all, now)
            q = self._by_client.get(client)
            if q is not None:
                self._expire(q, now)
                if not q:
                    del self._by_client[client]
            waits = []
            if q is not None and len(q) >= self.per_client:
                waits.append(q[0] + self.window - now)
            if len(self._all) >= self.overall:
                waits.append(self._all[0] + self.window - now)
            return max(1, int(max(waits)) + 1) if waits else 0

    def failed(self, client: str) -> None:
        now = self.clock()
        with self._lock:
            self._by_client.setdefault(client, deque()).append(now)
            self._all.append(now)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._by_client.pop(client, None)
