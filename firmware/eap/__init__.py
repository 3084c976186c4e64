"""EAP server methods run inside IKE_AUTH (RFC 3748, RFC 7296 §2.16).

Modules: packet (RFC 3748 codec), method (the method interface), mschap (RFC 2759 and
RFC 3079 arithmetic), mschapv2 and md5 (the methods), server (EapServer, EapStep).
"""

from firmware.eap.packet import EapError
from firmware.eap.server import EapServer, EapStep

__all__ = ["EapError", "EapServer", "EapStep"]
