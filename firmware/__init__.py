"""ikebox firmware: the IKEv2 responder, its daemon and the tools around it."""

__version__ = "0.1.0"
