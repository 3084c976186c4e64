"""Proposal choice against the configured suites (RFC 7296 §2.7, §3.3).

Two profiles. "secure" is the default. "legacy-windows" adds what Windows' built-in
client proposes out of the box (MODP1024, SHA1, AES-CBC): an operator switches it on
by name, knowingly. DES, 3DES, MD5 and MODP768 are never accepted by either.

Within a proposal the box picks by its own preference; between proposals it takes the
first acceptable one the peer listed. If the peer's KE is for a group the chosen
proposal also allows, that group wins, which avoids an INVALID_KE_PAYLOAD round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import Dh, Encr, Esn, Integ, Prf, Protocol, TransformType
from .message import Proposal, Transform

AEAD = {Encr.AES_GCM_8, Encr.AES_GCM_12, Encr.AES_GCM_16, Encr.CHACHA20_POLY1305}
WEAK_DH = {Dh.MODP_768, Dh.MODP_1024}
NEVER = {
    TransformType.ENCR: {Encr.DES, Encr.TRIPLE_DES, Encr.NULL},
    TransformType.PRF: {Prf.HMAC_MD5},
    TransformType.INTEG: {Integ.HMAC_MD5_96, Integ.HMAC_MD5_128},
    TransformType.DH: {Dh.MODP_768},
}


@dataclass(frozen=True)
class Suite:
    """What a profile accepts, each list in the box's order of preference."""

    encr: tuple[tuple[int, int | None], ...]
    prf: tuple[int, ...]
    integ: tuple[int, ...]
    dh: tuple[int, ...]


SECURE_IKE = Suite(
    encr=((Encr.AES_GCM_16, 256), (Encr.AES_GCM_16, 128), (Encr.AES_CBC, 256),
          (Encr.AES_CBC, 128), (Encr.CHACHA20_POLY1305, None)),
    prf=(Prf.HMAC_SHA2_256, Prf.HMAC_SHA2_384, Prf.HMAC_SHA2_512),
    integ=(Integ.HMAC_SHA2_256_128, Integ.HMAC_SHA2_384_192, Integ.HMAC_SHA2_512_256),
    dh=(Dh.CURVE_25519, Dh.ECP_256, Dh.ECP_384, Dh.ECP_521, Dh.MODP_2048, Dh.MODP_3072,
        Dh.MODP_4096),
)
SECURE_ESP = Suite(
    encr=((Encr.AES_GCM_16, 256), (Encr.AES_GCM_16, 128), (Encr.CHACHA20_POLY1305, None),
          (Encr.AES_CBC, 256), (Encr.AES_CBC, 128)),
    prf=(),
    integ=SECURE_IKE.integ,
    dh=(),
)
LEGACY_IKE = Suite(
    encr=SECURE_IKE.encr + ((Encr.AES_CBC, 192),),
    prf=SECURE_IKE.prf + (Prf.HMAC_SHA1,),
    integ=SECURE_IKE.integ + (Integ.HMAC_SHA1_96,),
    dh=SECURE_IKE.dh + (Dh.MODP_1024,),
)
LEGACY_ESP = Suite(
    encr=SECURE_ESP.encr + ((Encr.AES_CBC, 192),),
    prf=(),
    integ=SECURE_ESP.integ + (Integ.HMAC_SHA1_96,),
    dh=(),
)
PROFILES = {
    "secure": (SECURE_IKE, SECURE_ESP),
    "legacy-windows": (LEGACY_IKE, LEGACY_ESP),
}


def esp_suite(profile: str, prefer_chacha: bool) -> Suite:
    """The ESP suite, with ChaCha20-Poly1305 first on CPUs without AES instructions."""
    suite = PROFILES[profile][1]
    if not prefer_chacha:
        return suite
    chacha = [e for e in suite.encr if e[0] == Encr.CHACHA20_POLY1305]
    rest = [e for e in suite.encr if e[0] != Encr.CHACHA20_POLY1305]
    return Suite(tuple(chacha + rest), suite.prf, suite.integ, suite.dh)


@dataclass(frozen=True)
class Chosen:
    """The transforms picked from one proposal."""

    proposal_num: int
    encr: int
    key_bits: int | None
    prf: int | None
    integ: int | None
    dh: int | None
    esn: bool
    peer_spi: bytes

    @property
    def aead(self) -> bool:
        return self.encr in AEAD

    def reply_proposal(self, protocol: int, spi: bytes) -> Proposal:
        transforms = [Transform(TransformType.ENCR, self.encr, self.key_bits)]
        if self.prf is not None:
            transforms.append(Transform(TransformType.PRF, self.prf))
        if self.integ is not None:
            transforms.append(Transform(TransformType.INTEG, self.integ))
        if self.dh is not None:
            transforms.append(Transform(TransformType.DH, self.dh))
        if protocol == Protocol.ESP:
            transforms.append(Transform(TransformType.ESN, Esn.ESN if self.esn else
                                        Esn.NO_ESN))
        return Proposal(self.proposal_num, protocol, spi, tuple(transforms))

    def describe(self) -> str:
        parts = [Encr.name_of(self.encr) + (f"_{self.key_bits}" if self.key_bits else "")]
        if self.integ not in (None, Integ.NONE):
            parts.append(Integ.name_of(self.integ))  # type: ignore[arg-type]
        if self.prf is not None:
            parts.append("PRF_" + Prf.name_of(self.prf))
        if self.dh not in (None, Dh.NONE):
            parts.append(Dh.name_of(self.dh))  # type: ignore[arg-type]
        if self.esn:
            parts.append("ESN")
        return "/".join(parts)


class NoProposalChosen(Exception):
    """No proposal is acceptable; the message says what the peer offered and why."""


def choose(proposals: tuple[Proposal, ...], suite: Suite, protocol: int,
           ke_group: int | None = None) -> Chosen:
    """Picks the first acceptable proposal of `protocol`, or raises NoProposalChosen."""
    for proposal in proposals:
        if proposal.protocol != protocol:
            continue
        chosen = _choose_one(proposal, suite, protocol, ke_group)
        if chosen is not None:
            return chosen
    raise NoProposalChosen(explain_refusal(proposals, suite, protocol))


def _choose_one(p: Proposal, suite: Suite, protocol: int,
                ke_group: int | None) -> Chosen | None:
    offered = {t.type: [] for t in p.transforms}  # type: dict[int, list[Transform]]
    for t in p.transforms:
        offered[t.type].append(t)
    if any(ttype > TransformType.ESN for ttype in offered):
        return None  # a transform type or attribute we do not know (§3.3.6)

    encr = next(((e, k) for e, k in suite.encr
                 if any(t.id == e and t.key_bits == k
                        for t in offered.get(TransformType.ENCR, []))), None)
    if encr is None:
        return None
    aead = encr[0] in AEAD

    integ_ids = {t.id for t in offered.get(TransformType.INTEG, [])}
    if aead:
        # An AEAD cipher carries its own integrity: only "none" may be offered beside it.
        if integ_ids - {Integ.NONE}:
            return None
        integ = None
    else:
        integ = next((i for i in suite.integ if i in integ_ids), None)
        if integ is None:
            return None

    prf = None
    dh = None
    if protocol == Protocol.IKE:
        prf_ids = {t.id for t in offered.get(TransformType.PRF, [])}
        prf = next((x for x in suite.prf if x in prf_ids), None)
        dh_ids = [t.id for t in offered.get(TransformType.DH, [])]
        acceptable = [g for g in suite.dh if g in dh_ids]
        if prf is None or not acceptable:
            return None
        dh = ke_group if ke_group in acceptable else acceptable[0]
    else:
        # Children made in IKE_AUTH carry no PFS group; "none" is fine, others ignored.
        pass

    esn_ids = [t.id for t in offered.get(TransformType.ESN, [])]
    if protocol == Protocol.ESP and esn_ids and not set(esn_ids) & {Esn.NO_ESN, Esn.ESN}:
        return None
    esn = bool(esn_ids) and Esn.NO_ESN not in esn_ids
    return Chosen(p.num, encr[0], encr[1], prf, integ, dh, esn, p.spi)


def explain_refusal(proposals: tuple[Proposal, ...], suite: Suite, protocol: int) -> str:
    """One plain sentence an operator can act on."""
    mine = [p for p in proposals if p.protocol == protocol]
    if not mine:
        return f"the peer offered no {Protocol.name_of(protocol)} proposal"
    offered = "; ".join(p.describe() for p in mine)

    dh_all = {t.id for p in mine for t in p.of_type(TransformType.DH)}
    if protocol == Protocol.IKE and dh_all and not dh_all & set(suite.dh):
        weak = sorted(dh_all & (WEAK_DH | NEVER[TransformType.DH]))
        if weak and weak == sorted(dh_all):
            names = ", ".join(Dh.name_of(g) for g in weak)
            hint = " (the legacy-windows profile accepts MODP_1024)" \
                if Dh.MODP_1024 in dh_all and Dh.MODP_1024 not in suite.dh else ""
            return (f"the client offered only weak Diffie-Hellman groups ({names}), "
                    f"which this box refuses{hint}; it offered: {offered}")
        return f"no Diffie-Hellman group in common; the client offered: {offered}"

    encr_all = {t.id for p in mine for t in p.of_type(TransformType.ENCR)}
    if encr_all and encr_all <= NEVER[TransformType.ENCR]:
        names = ", ".join(Encr.name_of(e) for e in sorted(encr_all))
        return f"the client offered only broken ciphers ({names}); it offered: {offered}"
    integ_all = {t.id for p in mine for t in p.of_type(TransformType.INTEG)} - {Integ.NONE}
    if integ_all and not integ_all & set(suite.integ) and \
            not encr_all & {e for e, _ in suite.encr if e in AEAD}:
        names = ", ".join(Integ.name_of(i) for i in sorted(integ_all))
        return f"no integrity algorithm in common (client offered {names}); " \
            f"it offered: {offered}"
    return f"no proposal in common; the client offered: {offered}"
