"""The state of one IKE SA and its CHILD_SAs, as the responder keeps it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .actions import Endpoint
from .keys import ChildKeys, IkeKeys
from .message import TrafficSelector
from .proposals import Chosen


class State(enum.Enum):
    HALF_OPEN = "half-open"          # IKE_SA_INIT answered, waiting for IKE_AUTH
    EAP = "eap"                      # EAP rounds inside IKE_AUTH
    AUTH_FINAL = "auth-final"        # EAP succeeded, waiting for the client's AUTH
    INSTALLING = "installing"        # the kernel is installing the first CHILD_SA
    ESTABLISHED = "established"
    DELETING = "deleting"            # we sent a DELETE and wait for the answer
    DEAD = "dead"


@dataclass
class ChildSa:
    reqid: int
    spi_in: bytes                     # chosen by the box: ESP the box receives
    spi_out: bytes                    # chosen by the peer: ESP the box sends
    chosen: Chosen
    keys: ChildKeys = field(repr=False)
    ts_i: tuple[TrafficSelector, ...]
    ts_r: tuple[TrafficSelector, ...]
    encap: tuple[int, int] | None     # (box port, peer port) for UDP encapsulation
    created: float
    installed: bool = False
    install_error: str | None = None
    # (local, remote) endpoints the kernel holds this child at: set when it is handed
    # to the kernel, changed only when the kernel moved it.
    where: tuple[tuple[str, int], tuple[str, int]] | None = None
    move_failed_at: float | None = None
    # Kernel lifetimes (0 = none): at the soft one the box rekeys, at the hard one the
    # kernel drops the SAs.
    soft_lifetime_s: int = 0
    hard_lifetime_s: int = 0
    rekey_of: ChildSa | None = field(default=None, repr=False)  # the child this replaces
    rekey_due: bool = False
    delete_due: bool = False        # rekeyed by the box: its DELETE waits for a free slot
    expired: bool = False           # the kernel dropped it at its hard lifetime
    rekeying: bool = False
    rekey_retry_at: float = 0.0

    def describe(self) -> str:
        return self.chosen.describe()


@dataclass
class PendingRequest:
    """A request the box sent (DELETE, liveness) and retransmits until answered."""

    msg_id: int
    datagrams: tuple[bytes, ...]
    purpose: str
    sent: float
    tries: int = 1
    context: Any = None


@dataclass
class IkeSa:
    spi_i: bytes
    spi_r: bytes
    remote: Endpoint
    local: Endpoint
    created: float
    state: State = State.HALF_OPEN
    chosen: Chosen | None = None
    keys: IkeKeys | None = field(default=None, repr=False)
    nonce_i: bytes = b""
    nonce_r: bytes = b""
    init_request: bytes = field(default=b"", repr=False)
    init_response: bytes = field(default=b"", repr=False)
    peer_behind_nat: bool = False
    box_behind_nat: bool = False
    fragmentation: bool = False
    peer_hashes: tuple[int, ...] = ()
    next_msg_id: int = 1              # next request expected from the peer
    last_response: tuple[int, tuple[bytes, ...]] | None = field(default=None, repr=False)
    reassembly: Any = field(default=None, repr=False)   # fragments.Reassembly
    our_msg_id: int = 0               # next request the box sends
    pending: PendingRequest | None = None
    deadline: float = 0.0             # half-open / EAP round expiry
    last_heard: float = 0.0
    # IKE_AUTH
    id_i: Any = None                  # IdPayload
    id_i_body: bytes = field(default=b"", repr=False)
    id_r_body: bytes = field(default=b"", repr=False)
    auth_request: Any = None          # the first IKE_AUTH Message (SAi2, TS, CP)
    eap: Any = None                   # EapServer
    msk: bytes | None = field(default=None, repr=False)
    eap_method: str = ""
    auth_local: str = ""              # how the box proved itself: certificate or psk
    user: str | None = None
    lease: Any = None
    cp_reply: Any = None
    install_waiter: Any = field(default=None, repr=False)
    children: list[ChildSa] = field(default_factory=list)
    # Inbound SPIs of children gone without the client knowing yet: DELETEs to send.
    deletes_due: list[bytes] = field(default_factory=list)
    established: float | None = None  # when the session came up
    initial_contact: bool = False
    mobike_offered: bool = False     # the client sent MOBIKE_SUPPORTED
    mobike: bool = False             # RFC 4555 agreed (answered): the client moves the SA
    mobike_moved_at: float | None = None
    client_version: str = ""
    session_id: str = ""
    close_reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.spi_i.hex()}/{self.spi_r.hex()}"

    @property
    def nat(self) -> bool:
        return self.peer_behind_nat or self.box_behind_nat

    @property
    def peer(self) -> str:
        host, port = self.remote
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
