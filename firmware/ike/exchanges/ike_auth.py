"""IKE_AUTH (RFC 7296 §1.2, §2.15, §2.16): identities, the box's AUTH, EAP rounds, the
client's final AUTH, the config payload and the first CHILD_SA.

A client that sends AUTH in its first IKE_AUTH uses a pre-shared key; one that leaves
AUTH out asks for EAP. EAP then runs one IKE_AUTH round trip per EAP request, and the
client's last IKE_AUTH carries an AUTH keyed with the EAP method's MSK (or SK_pi when
the method makes none, as EAP-MD5).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ..actions import NegotiationEnded, SessionUp
from ..auth import shared_key_auth, signed_octets, verify_shared_key
from ..constants import (
    AuthMethod, CertEncoding, CfgAttr, CfgType, IdType, Notify, PayloadType, Protocol,
)
from ..ike_sa import ChildSa, IkeSa, State
from ..keys import child_keymat
from ..message import (
    AuthPayload, CertPayload, CpPayload, EapPayload, IdPayload, Message, NotifyPayload,
    Payload, SaPayload, TrafficSelector, TsPayload,
)
from ..proposals import NoProposalChosen, choose, esp_suite
from ..responder import ExchangeError, session_info

if TYPE_CHECKING:
    from ..responder import Responder

EXCHANGE = "IKE_AUTH"
NAMED_ID_TYPES = (IdType.ID_RFC822_ADDR, IdType.ID_FQDN, IdType.ID_KEY_ID)


def first_request(r: Responder, ike_sa: IkeSa, message: Message) -> list[Payload] | None:
    id_i = message.first(IdPayload, PayloadType.IDi)
    if id_i is None:
        raise ExchangeError(Notify.INVALID_SYNTAX, "the first IKE_AUTH carries no IDi")
    ike_sa.id_i = id_i
    ike_sa.id_i_body = id_i.body()
    ike_sa.id_r_body = r.policy.id_payload_body()
    ike_sa.auth_request = message
    notifies = message.notifies()
    ike_sa.initial_contact = Notify.INITIAL_CONTACT in notifies
    ike_sa.mobike_offered = Notify.MOBIKE_SUPPORTED in notifies
    ike_sa.client_version = _application_version(message)
    ike_sa.session_id = ike_sa.spi_r.hex()[:8]

    id_text = id_i.describe()
    auth = message.first(AuthPayload)
    if auth is not None:
        return _psk_client(r, ike_sa, message, auth, id_text)

    if r.policy.eap_factory is None:
        raise ExchangeError(Notify.AUTHENTICATION_FAILED, f"client {id_text} asked for EAP, "
                            f"but EAP is not enabled on this box", klass="auth")
    identity = id_text if id_i.id_type in NAMED_ID_TYPES and \
        r.policy.user_exists(id_text) else None
    ike_sa.eap = r.policy.eap_factory(identity)
    eap_request = ike_sa.eap.start()
    ike_sa.user = identity
    ike_sa.state = State.EAP
    ike_sa.deadline = r.now + r.policy.eap_timeout
    if identity is None:
        text = (f"client {id_text} asked for EAP: sending EAP-Identity request "
                f"with this box's certificate")
    else:
        text = f"client {id_text} named user {identity} and asked for EAP: starting EAP"
    r.trace(ike_sa, message.header.msg_id, EXCHANGE, "eap-start", text)
    return _box_proof(r, ike_sa) + [EapPayload(eap_request)]


def eap_round(r: Responder, ike_sa: IkeSa, message: Message) -> list[Payload]:
    eap = message.first(EapPayload)
    if eap is None:
        raise ExchangeError(Notify.INVALID_SYNTAX, "an IKE_AUTH during EAP carries no EAP "
                            "payload")
    step = ike_sa.eap.receive(eap.data)
    ike_sa.eap_method = step.method or ike_sa.eap_method
    if step.user:
        ike_sa.user = step.user
    msg_id = message.header.msg_id
    if step.outcome == "continue":
        ike_sa.deadline = r.now + r.policy.eap_timeout
        r.trace(ike_sa, msg_id, EXCHANGE, "eap", step.reason or "EAP continues")
        return [EapPayload(step.packet)]
    if step.outcome == "success":
        ike_sa.msk = step.msk
        ike_sa.state = State.AUTH_FINAL
        ike_sa.deadline = r.now + r.policy.eap_timeout
        r.trace(ike_sa, msg_id, EXCHANGE, "eap-success",
                f"user {ike_sa.user} passed EAP-{step.method.upper()}; waiting for the "
                f"client's AUTH")
        return [EapPayload(step.packet)]
    # EAP failed: the client gets EAP-Failure, and the box forgets the IKE SA once that
    # answer is out (§2.16 says the IKE SA is then unusable).
    reason = step.reason or "EAP authentication failed"
    r.trace(ike_sa, msg_id, EXCHANGE, "eap-failure", reason)
    r.fail(ike_sa, "auth", "EAP", reason)
    # AUTHENTICATION_FAILED beside EAP-Failure tells every client plainly (§2.21.2).
    return [EapPayload(step.packet), NotifyPayload(Notify.AUTHENTICATION_FAILED)] + \
        _dead_after_reply(r, ike_sa, reason)


def final_auth(r: Responder, ike_sa: IkeSa, message: Message) -> list[Payload] | None:
    auth = message.first(AuthPayload)
    if auth is None:
        raise ExchangeError(Notify.INVALID_SYNTAX, "the last IKE_AUTH carries no AUTH")
    keys = ike_sa.keys
    assert keys is not None
    secret = ike_sa.msk if ike_sa.msk else keys.sk_pi
    octets = signed_octets(ike_sa.init_request, ike_sa.nonce_r, keys.prf, keys.sk_pi,
                           ike_sa.id_i_body)
    if auth.method != AuthMethod.PSK or not verify_shared_key(keys.prf, secret, octets,
                                                               auth.data):
        raise ExchangeError(Notify.AUTHENTICATION_FAILED,
                            f"user {ike_sa.user}: the client's AUTH after EAP does not match "
                            f"(the EAP keys differ)", klass="auth")
    r.trace(ike_sa, message.header.msg_id, EXCHANGE, "auth-ok",
            f"user {ike_sa.user} authenticated (EAP-{ike_sa.eap_method.upper()})")
    our_secret = ike_sa.msk if ike_sa.msk else keys.sk_pr
    our_octets = signed_octets(ike_sa.init_response, ike_sa.nonce_i, keys.prf, keys.sk_pr,
                               ike_sa.id_r_body)
    our_auth = AuthPayload(AuthMethod.PSK, shared_key_auth(keys.prf, our_secret, our_octets))
    return _complete(r, ike_sa, message.header.msg_id, [our_auth])


def _psk_client(r: Responder, ike_sa: IkeSa, message: Message, auth: AuthPayload,
                id_text: str) -> list[Payload] | None:
    keys = ike_sa.keys
    assert keys is not None
    if r.policy.psk is None:
        raise ExchangeError(Notify.AUTHENTICATION_FAILED, f"client {id_text} sent a PSK "
                            f"AUTH, but no pre-shared key is configured", klass="auth")
    if auth.method != AuthMethod.PSK:
        raise ExchangeError(Notify.AUTHENTICATION_FAILED, f"client {id_text} authenticates "
                            f"with {AuthMethod.name_of(auth.method)}; this box accepts a "
                            f"pre-shared key or EAP", klass="auth")
    octets = signed_octets(ike_sa.init_request, ike_sa.nonce_r, keys.prf, keys.sk_pi,
                           ike_sa.id_i_body)
    if not verify_shared_key(keys.prf, r.policy.psk, octets, auth.data):
        raise ExchangeError(Notify.AUTHENTICATION_FAILED, f"client {id_text}: wrong "
                            f"pre-shared key", klass="auth")
    ike_sa.user = id_text
    r.trace(ike_sa, message.header.msg_id, EXCHANGE, "auth-ok",
            f"client {id_text} authenticated with the pre-shared key")
    return _complete(r, ike_sa, message.header.msg_id, _box_proof(r, ike_sa))


def _box_proof(r: Responder, ike_sa: IkeSa) -> list[Payload]:
    """IDr, the certificate chain and the box's AUTH."""
    keys = ike_sa.keys
    assert keys is not None
    id_r = IdPayload(PayloadType.IDr, ike_sa.id_r_body[0], ike_sa.id_r_body[4:])
    octets = signed_octets(ike_sa.init_response, ike_sa.nonce_i, keys.prf, keys.sk_pr,
                           ike_sa.id_r_body)
    if r.policy.server_auth == "psk":
        if r.policy.psk is None:
            raise ExchangeError(Notify.AUTHENTICATION_FAILED, "the box is set to prove "
                                "itself with a PSK, but none is configured", klass="cert")
        ike_sa.auth_local = "psk"
        return [id_r, AuthPayload(AuthMethod.PSK, shared_key_auth(keys.prf, r.policy.psk,
                                                                  octets))]
    if r.policy.signer is None:
        raise ExchangeError(Notify.AUTHENTICATION_FAILED, "the box has no certificate to "
                            "prove itself with", klass="cert")
    # CERTREQ is only a hint (§3.7): the box always sends its chain, whatever CAs the
    # client named, and never fails over an odd CERTREQ.
    certs: list[Payload] = [CertPayload(CertEncoding.X509_SIGNATURE, der)
                            for der in r.policy.cert_chain]
    method, data = r.policy.signer.sign(octets, ike_sa.peer_hashes)
    ike_sa.auth_local = f"certificate ({AuthMethod.name_of(method)})"
    return [id_r, *certs, AuthPayload(method, data)]


def _complete(r: Responder, ike_sa: IkeSa, msg_id: int,
              proof: list[Payload]) -> list[Payload] | None:
    """The client is authenticated: address, CHILD_SA, then the response."""
    request = ike_sa.auth_request
    if ike_sa.initial_contact:
        _drop_older_sessions(r, ike_sa)

    cp_reply, cp_error = _assign_address(r, ike_sa, request)
    if cp_error is not None:
        return proof + [NotifyPayload(cp_error)] + \
            _dead_after_reply(r, ike_sa, "no address for the client")
    base = proof + ([cp_reply] if cp_reply is not None else [])
    if ike_sa.mobike_offered:
        # RFC 4555 §3.3: agreed with this, the last IKE_AUTH response; from now on the
        # client moves the SA with UPDATE_SA_ADDRESSES. The box has one address.
        ike_sa.mobike = True
        base += [NotifyPayload(Notify.MOBIKE_SUPPORTED),
                 NotifyPayload(Notify.NO_ADDITIONAL_ADDRESSES)]

    sa = request.first(SaPayload)
    if sa is None:
        _established(r, ike_sa)
        return base
    try:
        child = negotiate_child(r, ike_sa, request, sa)
    except ExchangeError as exc:
        r.trace(ike_sa, msg_id, EXCHANGE, "child-refused", exc.reason)
        r.fail(ike_sa, exc.klass, "CHILD_SA", exc.reason)
        _established(r, ike_sa)
        return base + [NotifyPayload(exc.notify)]

    ike_sa.children.append(child)
    ike_sa.state = State.INSTALLING
    r.trace(ike_sa, msg_id, EXCHANGE, "child", f"CHILD_SA {describe_child(child)}; "
            f"installing it in the kernel")

    def finish(error: str | None) -> list[Payload]:
        if error is None:
            r.trace(ike_sa, msg_id, EXCHANGE, "child-up", "the kernel holds the CHILD_SA; "
                    "ESP traffic flows without Python")
            _established(r, ike_sa)
            return base + child_payloads(child)
        # Like strongSwan, answer NO_PROPOSAL_CHOSEN for the child and keep the IKE SA:
        # the client is authenticated and the operator sees why its tunnel is empty.
        r.trace(ike_sa, msg_id, EXCHANGE, "child-failed",
                f"the kernel refused the CHILD_SA: {error}; the IKE SA stays up without it")
        r.fail(ike_sa, "kernel", "CHILD_SA install", error)
        _established(r, ike_sa)
        return base + [NotifyPayload(Notify.NO_PROPOSAL_CHOSEN)]

    r.await_install(ike_sa, request.header, msg_id, child, finish)
    return None


def describe_child(child: ChildSa) -> str:
    return (f"{child.describe()} {child.spi_in.hex()}(in)/{child.spi_out.hex()}(out), "
            f"{', '.join(t.describe() for t in child.ts_i)} === "
            f"{', '.join(t.describe() for t in child.ts_r)}"
            + (", UDP-encapsulated" if child.encap else ""))


def child_payloads(child: ChildSa) -> list[Payload]:
    return [SaPayload((child.chosen.reply_proposal(Protocol.ESP, child.spi_in),)),
            TsPayload(PayloadType.TSi, child.ts_i), TsPayload(PayloadType.TSr, child.ts_r)]


def _established(r: Responder, ike_sa: IkeSa) -> None:
    ike_sa.state = State.ESTABLISHED
    ike_sa.established = r.now
    ike_sa.last_heard = r.now
    ike_sa.eap = None
    r.half_open.pop((ike_sa.spi_i, ike_sa.remote[0]), None)
    info = session_info(ike_sa)
    r.emit(NegotiationEnded(ike_sa.name, ike_sa.peer, True))
    r.emit(SessionUp(info))
    r.trace(ike_sa, None, EXCHANGE, "established",
            f"session up: user {ike_sa.user} from {ike_sa.peer}, address "
            f"{', '.join(info['assigned']) or 'none'}")


def _dead_after_reply(r: Responder, ike_sa: IkeSa, reason: str) -> list[Payload]:
    """Forget the IKE SA but let the reply that carries the refusal go out first."""
    r.remove(ike_sa, reason)
    # _respond still needs the keys and endpoint, which the object keeps.
    return []


def _drop_older_sessions(r: Responder, ike_sa: IkeSa) -> None:
    """INITIAL_CONTACT: the client lost its state, so its older SAs are gone (§2.4).

    Only sessions proven the same way count: a PSK client's IDi is merely claimed (the
    key is shared), so it must never end an EAP user's session of the same name.
    """
    for other in list(r.sas.values()):
        if other is not ike_sa and other.user == ike_sa.user and \
                other.eap_method == ike_sa.eap_method and \
                other.remote[0] == ike_sa.remote[0] and other.established is not None:
            r.trace(other, None, EXCHANGE, "replaced", "the client reconnected with "
                    "INITIAL_CONTACT; dropping its previous session")
            r.remove(other, "replaced by a new connection from the same client")


def _application_version(message: Message) -> str:
    cp = message.first(CpPayload)
    if cp is None:
        return ""
    for attr, value in cp.attributes:
        if attr == CfgAttr.APPLICATION_VERSION:
            return value.decode("utf-8", "replace")[:80]
    return ""


def _assign_address(r: Responder, ike_sa: IkeSa,
                    request: Message) -> tuple[CpPayload | None, int | None]:
    from ...pool import PoolExhausted
    cp = request.first(CpPayload)
    if cp is None or cp.cfg_type != CfgType.CFG_REQUEST:
        reason = "the client asked for no address (no CFG_REQUEST); this box needs one"
        r.fail(ike_sa, "protocol", "config payload", reason)
        r.trace(ike_sa, None, EXCHANGE, "cp", reason)
        return None, Notify.FAILED_CP_REQUIRED
    wanted = {attr for attr, _ in cp.attributes}
    want_v4 = CfgAttr.INTERNAL_IP4_ADDRESS in wanted
    want_v6 = CfgAttr.INTERNAL_IP6_ADDRESS in wanted
    pool = r.policy.pool
    try:
        lease = pool.allocate(ike_sa.name, ike_sa.user, want_v4, want_v6)
    except PoolExhausted as exc:
        reason = f"no address for user {ike_sa.user}: {exc}"
        r.fail(ike_sa, "pool", "config payload", reason)
        r.trace(ike_sa, None, EXCHANGE, "cp", reason)
        return None, Notify.INTERNAL_ADDRESS_FAILURE
    ike_sa.lease = lease
    attrs: list[tuple[int, bytes]] = []
    if lease.ipv4 is not None:
        attrs.append((CfgAttr.INTERNAL_IP4_ADDRESS, lease.ipv4.packed))
        if CfgAttr.INTERNAL_IP4_NETMASK in wanted:  # Windows asks; others do not care
            attrs.append((CfgAttr.INTERNAL_IP4_NETMASK, lease.ipv4_net.netmask.packed))
    if lease.ipv6 is not None:
        attrs.append((CfgAttr.INTERNAL_IP6_ADDRESS, lease.ipv6.packed +
                      bytes([lease.ipv6_net.prefixlen])))
    for server in r.policy.dns:
        ip = ipaddress.ip_address(server)
        if ip.version == 4 and lease.ipv4 is not None:
            attrs.append((CfgAttr.INTERNAL_IP4_DNS, ip.packed))
        elif ip.version == 6 and lease.ipv6 is not None:
            attrs.append((CfgAttr.INTERNAL_IP6_DNS, ip.packed))
    for net in r.policy.lan_networks():
        if net.prefixlen == 0:
            continue  # everything: clients route all traffic into the tunnel anyway
        if net.version == 4:
            attrs.append((CfgAttr.INTERNAL_IP4_SUBNET,
                          net.network_address.packed + net.netmask.packed))
        else:
            attrs.append((CfgAttr.INTERNAL_IP6_SUBNET,
                          net.network_address.packed + bytes([net.prefixlen])))
    r.trace(ike_sa, None, EXCHANGE, "cp", f"assigned {', '.join(map(str, lease.addresses))} "
            f"to user {ike_sa.user}", level=1)
    return CpPayload(CfgType.CFG_REPLY, tuple(attrs)), None


def negotiate_child(r: Responder, ike_sa: IkeSa, request: Message, sa: SaPayload,
                    nonces: tuple[bytes, bytes] | None = None,
                    dh_shared: bytes = b"", reqid: int | None = None) -> ChildSa:
    """Chooses the ESP proposal, narrows the selectors and derives the keys.

    A rekey passes the old child's reqid: the kernel's policies are keyed by selector,
    so the new SA pair must hang off the same policies as the one it replaces.
    """
    suite = esp_suite(r.policy.profile, r.policy.prefer_chacha)
    try:
        chosen = choose(sa.proposals, suite, Protocol.ESP)
    except NoProposalChosen as exc:
        raise ExchangeError(Notify.NO_PROPOSAL_CHOSEN, f"CHILD_SA: {exc}",
                            klass="proposal", fatal=False) from None
    if len(chosen.peer_spi) != 4:
        raise ExchangeError(Notify.INVALID_SYNTAX, "the client's ESP SPI is not 4 bytes",
                            fatal=False)
    ts_i_req = request.first(TsPayload, PayloadType.TSi)
    ts_r_req = request.first(TsPayload, PayloadType.TSr)
    if ts_i_req is None or ts_r_req is None:
        raise ExchangeError(Notify.INVALID_SYNTAX, "the CHILD_SA request has no TSi/TSr",
                            fatal=False)
    ts_i = narrow_initiator(ts_i_req.selectors, ike_sa.lease.addresses if ike_sa.lease else [])
    ts_r = narrow_responder(ts_r_req.selectors, r.policy.lan_networks())
    if not ts_i or not ts_r:
        raise ExchangeError(Notify.TS_UNACCEPTABLE, "the client's traffic selectors do not "
                            "cover its address and the LAN subnets", klass="protocol",
                            fatal=False)
    keys = ike_sa.keys
    assert keys is not None
    nonce_i, nonce_r = nonces or (ike_sa.nonce_i, ike_sa.nonce_r)
    keymat = child_keymat(keys.prf, keys.sk_d, chosen, nonce_i, nonce_r, dh_shared)
    encap = (ike_sa.local[1], ike_sa.remote[1]) if ike_sa.nat else None
    soft, hard = r.child_lifetimes()
    return ChildSa(reqid=reqid or r.new_reqid(), spi_in=r.new_spi_in(),
                   spi_out=chosen.peer_spi,
                   chosen=chosen, keys=keymat, ts_i=tuple(ts_i), ts_r=tuple(ts_r),
                   encap=encap, created=r.now, soft_lifetime_s=soft, hard_lifetime_s=hard)


def narrow_initiator(offered: tuple[TrafficSelector, ...],
                     addresses: list) -> list[TrafficSelector]:
    """TSi becomes the client's own address, if what it offered covers it."""
    out = []
    for addr in addresses:
        for ts in offered:
            if len(ts.start_addr) == len(addr.packed) and ts.first <= addr <= ts.last:
                net = ipaddress.ip_network(f"{addr}/{addr.max_prefixlen}")
                out.append(TrafficSelector.from_network(net, ts.ip_proto))
                break
    return out


def narrow_responder(offered: tuple[TrafficSelector, ...],
                     lan: list) -> list[TrafficSelector]:
    """TSr becomes the overlap of what the client asked for and the LAN subnets."""
    out = []
    for ts in offered:
        for net in lan:
            if len(ts.start_addr) != len(net.network_address.packed):
                continue
            lo = max(int(ts.first), int(net.network_address))
            hi = min(int(ts.last), int(net.broadcast_address))
            if lo > hi:
                continue
            size = len(ts.start_addr)
            out.append(TrafficSelector(ts.ts_type, ts.ip_proto, ts.start_port, ts.end_port,
                                       lo.to_bytes(size, "big"), hi.to_bytes(size, "big")))
    return out

