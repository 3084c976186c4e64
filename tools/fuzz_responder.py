"""A mutation fuzzer for the responder: `python -m tools.fuzz_responder [SEED] [ROUNDS]`.

It seals mutated inner payloads into validly encrypted IKE_AUTH, INFORMATIONAL and
CREATE_CHILD_SA requests, so the mutations reach the parsers and exchange handlers
behind the integrity check, and counts every exception that escapes the responder.
Any line it prints other than the totals is a bug: the responder must never raise on
input. (Found two so far, both fixed: inconsistent fragment totals and inverted
traffic selectors.)
"""

from __future__ import annotations

import collections
import ipaddress
import os
import random
import sys
import tempfile
import traceback

from firmware.ike.constants import ExchangeType, PayloadType, Protocol
from firmware.ike.message import (
    CpPayload, DeletePayload, NoncePayload, NotifyPayload, SaPayload, TrafficSelector,
    TsPayload, encode_payloads,
)
from firmware.pki import make_ca, make_server_cert
from firmware.users import UserStore
from tests.unit import conftest
from tests.unit import test_responder as tr
from tests.unit.initiator import Initiator, esp_proposal
from tests.unit.test_responder_attacks import _mutations, seal_raw

BOX, CLIENT = tr.BOX, tr.CLIENT


def everything() -> tuple[TrafficSelector, ...]:
    return (TrafficSelector.from_network(ipaddress.ip_network("0.0.0.0/0")),)


def main() -> int:
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    rng = random.Random(seed)
    ca_key, ca_cert = make_ca("fuzz CA", "ecdsa")
    key, cert = make_server_cert(ca_key, ca_cert, ["ikebox.test"], "ecdsa")
    users = UserStore(os.path.join(tempfile.mkdtemp(), "users.json"))
    users.add("alice", "alice-password-1")
    make = conftest.make_responder.__wrapped__((key, cert, ca_cert), users)
    errors: collections.Counter[str] = collections.Counter()
    tried = 0

    def attempt(fn) -> None:  # noqa: ANN001
        nonlocal tried
        tried += 1
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - counting them is the point
            where = traceback.extract_tb(exc.__traceback__)[-1]
            errors[f"{type(exc).__name__}: {str(exc)[:60]} @ "
                   f"{os.path.basename(where.filename)}:{where.lineno}"] += 1

    for _ in range(rounds):
        # Mutated first IKE_AUTH requests (the EAP path).
        client = Initiator(id_i=(3, b"alice"))
        first, plain = encode_payloads(client.auth_first(extra=[NotifyPayload(16384)]))
        for mutated in list(_mutations(plain, rng, 20)):
            r, client = make(), Initiator(id_i=(3, b"alice"))
            tr.init(r, client)
            datagram = seal_raw(client, ExchangeType.IKE_AUTH, first, mutated, 1)
            attempt(lambda r=r, d=datagram: tr.install_all(r, r.receive(d, CLIENT, BOX, 1000.0)))

        # Mutated INFORMATIONAL and CREATE_CHILD_SA requests on an established SA.
        r, client = make(), Initiator(fragmentation=True)
        tr.init(r, client)
        tr.exchange(r, client, client.auth_first(with_psk=conftest.PSK))
        spi_out = next(iter(r.sas.values())).children[0].spi_out
        requests = [
            (ExchangeType.INFORMATIONAL, [DeletePayload(Protocol.ESP, (spi_out,)),
                                          NotifyPayload(24), CpPayload(1, ((1, b""),))]),
            (ExchangeType.CREATE_CHILD_SA, [
                NotifyPayload(16393, b"", Protocol.ESP, spi_out),
                SaPayload((esp_proposal(b"\x01\x02\x03\x04"),)), NoncePayload(bytes(32)),
                TsPayload(PayloadType.TSi, everything()),
                TsPayload(PayloadType.TSr, everything())]),
        ]
        for exchange, payloads in requests:
            first, plain = encode_payloads(payloads)
            for mutated in list(_mutations(plain, rng, 15)):
                if not r.sas:
                    break
                datagram = seal_raw(client, exchange, first, mutated, client.msg_id)
                client.msg_id += 1
                attempt(lambda r=r, d=datagram: tr.install_all(
                    r, r.receive(d, CLIENT, BOX, 1000.0)))
        for now in (1000.0, 1031.0, 1e6):
            attempt(lambda r=r, now=now: r.tick(now))

    for text, count in errors.most_common():
        print(f"{count:5} {text}")
    print(f"{tried} inputs, {sum(errors.values())} exceptions escaped the responder")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
