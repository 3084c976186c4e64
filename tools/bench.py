"""`make bench`: CPU per established IKE SA in the sans-IO responder, and codec speed.

Figures are CPU time (process_time) per operation, which is steadier than wall time on
a shared machine. For comparison, strongSwan as responder on these machines took
0.45-1.2 ms per IKE SA with PSK + X25519, 1.4-1.8 ms with an RSA certificate +
EAP-MSCHAPv2 + X25519 and 3.2-4.4 ms with PSK + MODP-2048
(shared/reference/test-environment.md). Each figure here covers both sides, since the
scripted initiator runs in the same process; the responder's share is printed too.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from firmware.eap import EapServer
from firmware.ike import actions as act
from firmware.ike.auth import Signer
from firmware.ike.constants import AuthMethod, Dh, ExchangeType
from firmware.ike.message import AuthPayload, EapPayload, parse_message
from firmware.ike.policy import ResponderPolicy
from firmware.ike.responder import Responder
from firmware.pki import make_ca, make_server_cert
from firmware.pool import AddressPool
from firmware.users import UserStore
from tests.unit.initiator import BOX, CLIENT, Initiator, ike_proposal
from tests.unit.test_eap_server import Peer

PSK = b"benchmark pre-shared key"


class Clock:
    def __init__(self) -> None:
        self.responder = 0.0

    def run(self, fn, *args):  # noqa: ANN001, ANN201
        start = time.process_time()
        out = fn(*args)
        self.responder += time.process_time() - start
        return out


def make_responder(users: UserStore, key_type: str) -> Responder:
    from cryptography.hazmat.primitives import serialization
    ca_key, ca_cert = make_ca("bench CA", key_type)
    key, cert = make_server_cert(ca_key, ca_cert, ["bench.ikebox"], key_type)
    chain = tuple(c.public_bytes(serialization.Encoding.DER) for c in (cert, ca_cert))
    return Responder(ResponderPolicy(
        identity="bench.ikebox", signer=Signer(key), cert_chain=chain, psk=PSK,
        eap_factory=lambda identity: EapServer(users, identity=identity),
        user_exists=lambda name: users.get(name) is not None,
        pool=AddressPool("10.0.0.0/16"), dpd_interval=0, cookie_threshold=10**9))


def one_sa(r: Responder, clock: Clock, group: int, eap: bool) -> None:
    client = Initiator(group=group, proposals=(ike_proposal(dh=(group,)),),
                       id_i=(3, b"alice"))
    reply = clock.run(r.receive, client.sa_init(), CLIENT, BOX, 0.0)
    client.sa_init_done(next(a for a in reply if isinstance(a, act.Send)).datagrams[0])

    def exchange(payloads):  # noqa: ANN001, ANN202
        datagram = client.request(ExchangeType.IKE_AUTH, payloads)[0]
        actions = clock.run(r.receive, datagram, CLIENT, BOX, 0.0)
        for a in actions:
            if isinstance(a, act.InstallChild):
                actions = clock.run(r.install_result, a.ike_sa, a.child.reqid, None, 0.0)
        return client.open(next(a for a in actions if isinstance(a, act.Send)).datagrams)

    if not eap:
        exchange(client.auth_first(with_psk=PSK))
        return
    peer = Peer("alice", "bench-password")
    msg = exchange(client.auth_first())
    while True:
        eap_payload = msg.first(EapPayload)
        if eap_payload.data[0] != 1:
            break
        msg = exchange([EapPayload(peer.answer(eap_payload.data))])
    exchange([AuthPayload(AuthMethod.PSK, client.psk_auth(peer.msk))])


def bench_sa(label: str, users: UserStore, key_type: str, group: int, eap: bool,
             count: int) -> None:
    r = make_responder(users, key_type)
    clock = Clock()
    one_sa(r, clock, group, eap)  # warm up caches and imports
    clock.responder = 0.0
    start = time.process_time()
    for _ in range(count):
        one_sa(r, clock, group, eap)
    total = (time.process_time() - start) / count * 1000
    mine = clock.responder / count * 1000
    assert len(r.sessions()) == count + 1, (len(r.sessions()), r.counts())
    print(f"{label:48} {mine:7.2f} ms responder  {total:7.2f} ms both sides  (n={count})")


def bench_codec(count: int) -> None:
    client = Initiator()
    data = client.sa_init()
    start = time.process_time()
    for _ in range(count):
        parse_message(data)
    per = (time.process_time() - start) / count * 1e6
    print(f"{'parse a 232-byte IKE_SA_INIT request':48} {per:7.1f} us")


def main() -> int:
    count = int(os.environ.get("BENCH_COUNT", "200"))
    with tempfile.TemporaryDirectory() as tmp:
        users = UserStore(os.path.join(tmp, "users.json"))
        users.add("alice", "bench-password")
        print(f"ikebox responder, CPU per established IKE SA with its first CHILD_SA "
              f"(Python {sys.version.split()[0]})")
        bench_sa("PSK + X25519 (ECDSA cert for the box)", users, "ecdsa", Dh.CURVE_25519,
                 False, count)
        bench_sa("ECDSA cert + EAP-MSCHAPv2 + X25519", users, "ecdsa", Dh.CURVE_25519,
                 True, count)
        bench_sa("RSA-3072 cert + EAP-MSCHAPv2 + X25519", users, "rsa", Dh.CURVE_25519,
                 True, max(20, count // 4))
        bench_sa("PSK + MODP-2048", users, "ecdsa", Dh.MODP_2048, False, max(20, count // 4))
        bench_codec(count * 20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
