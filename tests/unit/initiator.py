"""A scripted IKEv2 initiator for driving the responder with plain bytes.

Built on the same codec and crypto as the box, but playing the other role: it seals
with SK_ei/SK_ai and opens with SK_er/SK_ar. Tests use it to walk every exchange,
step by step, with an injected clock.
"""

from __future__ import annotations

import dataclasses
import os
import struct

from firmware.ike import crypto, sk
from firmware.ike.auth import shared_key_auth, signed_octets
from firmware.ike.constants import (
    AuthMethod, CfgAttr, CfgType, Dh, Encr, ExchangeType, Flags, IdType, Integ, Notify,
    PayloadType, Prf, Protocol, TransformType,
)
from firmware.ike.keys import IkeKeys, derive_ike_keys
from firmware.ike.message import (
    AuthPayload, CpPayload, EapPayload, Header, IdPayload, KePayload, Message, NoncePayload,
    NotifyPayload, Payload, Proposal, SaPayload, SkfPayload, SkPayload, TrafficSelector,
    Transform, TsPayload, parse_message, parse_payloads,
)
from firmware.ike.nat import nat_hash
from firmware.ike.proposals import Chosen

import ipaddress

CLIENT = ("192.0.2.10", 500)
BOX = ("192.0.2.1", 500)


def ike_proposal(encr: int = Encr.AES_GCM_16, key_bits: int | None = 256,
                 integ: int | None = None, prf: int = Prf.HMAC_SHA2_256,
                 dh: tuple[int, ...] = (Dh.CURVE_25519,), num: int = 1) -> Proposal:
    transforms = [Transform(TransformType.ENCR, encr, key_bits),
                  Transform(TransformType.PRF, prf)]
    if integ is not None:
        transforms.append(Transform(TransformType.INTEG, integ))
    transforms += [Transform(TransformType.DH, g) for g in dh]
    return Proposal(num, Protocol.IKE, b"", tuple(transforms))


def esp_proposal(spi: bytes, encr: int = Encr.AES_GCM_16, key_bits: int | None = 256,
                 integ: int | None = None, esn: tuple[int, ...] = (0,),
                 num: int = 1) -> Proposal:
    transforms = [Transform(TransformType.ENCR, encr, key_bits)]
    if integ is not None:
        transforms.append(Transform(TransformType.INTEG, integ))
    transforms += [Transform(TransformType.ESN, e) for e in esn]
    return Proposal(num, Protocol.ESP, spi, tuple(transforms))


def mirror(keys: IkeKeys) -> IkeKeys:
    """The same keys seen from the initiator: what it sends is what the box opens."""
    return dataclasses.replace(keys, sk_ai=keys.sk_ar, sk_ar=keys.sk_ai,
                               sk_ei=keys.sk_er, sk_er=keys.sk_ei)


class Initiator:
    def __init__(self, group: int = Dh.CURVE_25519, remote=BOX, local=CLIENT,
                 proposals: tuple[Proposal, ...] | None = None,
                 fragmentation: bool = False, nat_source: tuple[str, int] | None = None,
                 id_i: tuple[int, bytes] = (IdType.ID_RFC822_ADDR, b"alice")) -> None:
        self.spi_i = os.urandom(8)
        self.spi_r = bytes(8)
        self.group = group
        self.dh = crypto.get_dh_group(group).generate()
        self.nonce_i = os.urandom(32)
        self.remote = remote
        self.local = local
        self.proposals = proposals or (ike_proposal(dh=(group,)),)
        self.fragmentation = fragmentation
        self.nat_source = nat_source or local
        self.msg_id = 1
        self.keys: IkeKeys | None = None
        self.mine: IkeKeys | None = None
        self.init_request = b""
        self.init_response = b""
        self.nonce_r = b""
        self.id_i = id_i
        self.id_i_body = bytes([id_i[0], 0, 0, 0]) + id_i[1]
        self.id_r_body = b""
        self.child_spi = os.urandom(4)

    # --- IKE_SA_INIT ---------------------------------------------------------------

    def sa_init(self, extra: list[Payload] | None = None, group: int | None = None) -> bytes:
        ke_group = group or self.group
        ke_data = self.dh.public if ke_group == self.group else \
            crypto.get_dh_group(ke_group).generate().public
        payloads: list[Payload] = list(extra or []) + [
            SaPayload(self.proposals), KePayload(ke_group, ke_data),
            NoncePayload(self.nonce_i),
            NotifyPayload(Notify.NAT_DETECTION_SOURCE_IP,
                          nat_hash(self.spi_i, bytes(8), *self.nat_source)),
            NotifyPayload(Notify.NAT_DETECTION_DESTINATION_IP,
                          nat_hash(self.spi_i, bytes(8), *self.remote)),
            NotifyPayload(Notify.SIGNATURE_HASH_ALGORITHMS, struct.pack("!HHH", 2, 3, 4)),
        ]
        if self.fragmentation:
            payloads.append(NotifyPayload(Notify.IKEV2_FRAGMENTATION_SUPPORTED))
        from firmware.ike.message import encode_message
        header = Header(self.spi_i, bytes(8), 0, ExchangeType.IKE_SA_INIT, Flags.INITIATOR, 0)
        self.init_request = encode_message(header, payloads)
        return self.init_request

    def sa_init_done(self, response: bytes) -> Message:
        msg = parse_message(response)
        self.init_response = response
        self.spi_r = msg.header.spi_r
        ke = msg.first(KePayload)
        self.nonce_r = msg.first(NoncePayload).data
        sa = msg.first(SaPayload)
        p = sa.proposals[0]
        encr = p.of_type(TransformType.ENCR)[0]
        integ = p.of_type(TransformType.INTEG)
        chosen = Chosen(p.num, encr.id, encr.key_bits, p.of_type(TransformType.PRF)[0].id,
                        integ[0].id if integ else None, ke.group, False, b"")
        shared = self.dh.exchange(ke.data)
        self.keys = derive_ike_keys(chosen, shared, self.nonce_i, self.nonce_r, self.spi_i,
                                    self.spi_r)
        self.mine = mirror(self.keys)
        return msg

    # --- encrypted exchanges -------------------------------------------------------

    def request(self, exchange: int, payloads: list[Payload], msg_id: int | None = None,
                fragment: int = 0) -> list[bytes]:
        assert self.mine is not None
        mid = self.msg_id if msg_id is None else msg_id
        if msg_id is None:
            self.msg_id += 1
        header = Header(self.spi_i, self.spi_r, 0, exchange, Flags.INITIATOR, mid)
        if fragment:
            return sk.seal_fragments(self.mine, header, payloads, fragment)
        return [sk.seal(self.mine, header, payloads)]

    def open(self, datagrams: tuple[bytes, ...] | list[bytes]) -> Message:
        """Decrypts a response (reassembling fragments)."""
        assert self.mine is not None
        pieces: dict[int, bytes] = {}
        first = 0
        header = None
        for data in datagrams:
            msg = parse_message(data)
            header = msg.header
            last = msg.payloads[-1]
            if isinstance(last, SkPayload):
                plain = sk.open_encrypted(self.mine, data, last.data)
                return Message(header, tuple(parse_payloads(last.first_inner, plain)), data)
            assert isinstance(last, SkfPayload)
            body = struct.pack("!HH", last.number, last.total) + last.data
            pieces[last.number] = sk.open_encrypted(self.mine, data, body, aad_extra=4)
            if last.number == 1:
                first = last.first_inner
        joined = b"".join(pieces[n] for n in sorted(pieces))
        return Message(header, tuple(parse_payloads(first, joined)), b"")

    def auth_first(self, with_psk: bytes | None = None, cp: bool = True,
                   sa: bool = True, extra: list[Payload] | None = None) -> list[Payload]:
        payloads: list[Payload] = [IdPayload(PayloadType.IDi, self.id_i[0], self.id_i[1])]
        payloads += list(extra or [])
        if with_psk is not None:
            payloads.append(AuthPayload(AuthMethod.PSK, self.psk_auth(with_psk)))
        if cp:
            payloads.append(CpPayload(CfgType.CFG_REQUEST, (
                (CfgAttr.INTERNAL_IP4_ADDRESS, b""), (CfgAttr.INTERNAL_IP4_DNS, b""),
                (CfgAttr.APPLICATION_VERSION, b"scripted test initiator"))))
        if sa:
            payloads += [
                SaPayload((esp_proposal(self.child_spi),)),
                TsPayload(PayloadType.TSi, (TrafficSelector.from_network(
                    ipaddress.ip_network("0.0.0.0/0")),)),
                TsPayload(PayloadType.TSr, (TrafficSelector.from_network(
                    ipaddress.ip_network("0.0.0.0/0")),)),
            ]
        return payloads

    def psk_auth(self, secret: bytes) -> bytes:
        assert self.keys is not None
        octets = signed_octets(self.init_request, self.nonce_r, self.keys.prf,
                               self.keys.sk_pi, self.id_i_body)
        return shared_key_auth(self.keys.prf, secret, octets)

    def expected_box_auth(self, secret: bytes) -> bytes:
        assert self.keys is not None
        octets = signed_octets(self.init_response, self.nonce_i, self.keys.prf,
                               self.keys.sk_pr, self.id_r_body)
        return shared_key_auth(self.keys.prf, secret, octets)

    def box_octets(self) -> bytes:
        assert self.keys is not None
        return signed_octets(self.init_response, self.nonce_i, self.keys.prf,
                             self.keys.sk_pr, self.id_r_body)

    def eap(self, data: bytes) -> list[Payload]:
        return [EapPayload(data)]


__all__ = ["Initiator", "ike_proposal", "esp_proposal", "CLIENT", "BOX", "Integ"]
