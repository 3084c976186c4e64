"""EAP server methods run inside IKE_AUTH (RFC 3748, RFC 7296 §2.16)."""
