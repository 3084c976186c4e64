"""What the responder asks its host to do. Plain records: no sockets, no kernel."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Endpoint = tuple[str, int]


@dataclass(frozen=True)
class Send:
    """Send these datagrams (one, or the fragments of one message) from `local` to
    `remote`. On port 4500 the host prepends the non-ESP marker."""

    datagrams: tuple[bytes, ...] = field(repr=False)
    remote: Endpoint
    local: Endpoint


@dataclass(frozen=True)
class InstallChild:
    """Install this CHILD_SA in the kernel, then report with Responder.install_result.
    The response to the peer waits for that result, so a CHILD_SA is never claimed
    before the kernel holds it."""

    ike_sa: str
    child: Any  # ike_sa.ChildSa
    local: Endpoint
    remote: Endpoint


@dataclass(frozen=True)
class DeleteChild:
    """Remove this CHILD_SA from the kernel. It carries the tunnel endpoints because
    the IKE SA it belonged to may already be gone."""

    ike_sa: str
    child: Any
    local: Endpoint
    remote: Endpoint


@dataclass(frozen=True)
class MoveChild:
    """The peer now sends from another address or port (its NAT changed the mapping):
    point this installed CHILD_SA's kernel state at the new endpoint. The old
    endpoints and encapsulation say where the kernel state is now; child.encap is
    already the new one."""

    ike_sa: str
    child: Any
    old_local: Endpoint
    old_remote: Endpoint
    old_encap: tuple[int, int] | None
    local: Endpoint
    remote: Endpoint


@dataclass(frozen=True)
class SessionUp:
    session: dict[str, Any]


@dataclass(frozen=True)
class SessionDown:
    session: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class NegotiationStarted:
    ike_sa: str
    peer: str


@dataclass(frozen=True)
class NegotiationEnded:
    ike_sa: str
    peer: str
    established: bool


@dataclass(frozen=True)
class Failure:
    """A connection attempt failed. `klass` is one of auth, proposal, cert, kernel,
    pool, protocol (see docs/control-protocol.md)."""

    klass: str
    peer: str
    user: str | None
    step: str
    reason: str


@dataclass(frozen=True)
class Trace:
    record: dict[str, Any]


Action = (Send | InstallChild | DeleteChild | SessionUp | SessionDown | NegotiationStarted
          | NegotiationEnded | Failure | Trace)
