"""Reassembly of encrypted fragments (RFC 7383 §2.6), with a bound on memory.

Each fragment is authenticated on its own before it is kept, so only the peer of an
IKE SA can fill this buffer; the bounds still matter because that peer may not yet be
authenticated (IKE_AUTH is where fragmentation is used).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_FRAGMENTS = 64
MAX_MESSAGE = 64 * 1024  # reassembled plaintext; strongSwan's default is smaller still


class FragmentError(Exception):
    """A fragment cannot belong to a sane message; the partial message is dropped."""


@dataclass
class Reassembly:
    msg_id: int
    total: int
    first_inner: int | None = None
    parts: dict[int, bytes] = field(default_factory=dict, repr=False)
    size: int = 0

    def add(self, number: int, total: int, first_inner: int, plain: bytes) -> bool:
        """Keeps one fragment; True once the message is whole."""
        if total != self.total:
            raise FragmentError(f"fragment {number} says {total} fragments, earlier ones "
                                f"said {self.total}")
        if number in self.parts:
            return False  # a retransmitted fragment
        if self.size + len(plain) > MAX_MESSAGE:
            raise FragmentError(f"the reassembled message would exceed {MAX_MESSAGE} bytes")
        if number == 1:
            self.first_inner = first_inner
        self.parts[number] = plain
        self.size += len(plain)
        return len(self.parts) == self.total

    def joined(self) -> tuple[int, bytes]:
        assert self.first_inner is not None
        return self.first_inner, b"".join(self.parts[n] for n in range(1, self.total + 1))
