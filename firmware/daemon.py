"""`ikebox daemon`: the asyncio host around the sans-IO responder.

It owns the IKE sockets, the kernel's XFRM state, the address pool, the user store
and the control socket, and carries out the responder's actions. Only this process
changes kernel state; everything else asks it through the control socket.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from typing import Any

from . import __version__, config as config_mod
from .control import ControlError, ControlServer
from .eap import EapServer
from .ike import actions as act
from .ike.auth import Signer
from .ike.policy import ResponderPolicy
from .ike.responder import Responder
from .kernel.records import ChildRecord
from .kernel.xfrm import OWNED_REQIDS
from .pki import Pki
from .pool import AddressPool
from .udp import IkeSocket
from .users import UserError, UserStore

log = logging.getLogger("ikebox.daemon")

FAILURES_KEPT = 200
TRACE_KEPT = 2000


class Daemon:
    def __init__(self, config_path: str | None, kernel: Any = None) -> None:
        self.config_path = config_path
        self.cfg = config_mod.load(config_path)
        self.started = time.time()
        self.ready = False
        self.kernel = kernel
        self.sockets: list[IkeSocket] = []
        self.failures: collections.deque[dict[str, Any]] = collections.deque(maxlen=FAILURES_KEPT)
        self.traces: collections.deque[dict[str, Any]] = collections.deque(maxlen=TRACE_KEPT)
        self.control: ControlServer | None = None
        self.forwarding: Any = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        state_dir = self.cfg["box"]["state_dir"]
        # Traversable (not listable) so the web UI's group can reach state_dir/web;
        # everything secret inside has its own 0600/0700 mode.
        os.makedirs(state_dir, mode=0o711, exist_ok=True)
        os.chmod(state_dir, 0o711)
        self.users = UserStore(os.path.join(state_dir, "users.json"))
        self.pki = Pki(state_dir, self.cfg["box"]["key_type"])
        self.pool = AddressPool(self.cfg["pool"]["ipv4"], self.cfg["pool"]["ipv6"])
        self.credentials = self.pki.ensure([self.cfg["box"]["identity"]])
        self.responder = Responder(self._policy())

    # --- configuration -------------------------------------------------------------

    def _policy(self) -> ResponderPolicy:
        cfg = self.cfg
        ike = cfg["ike"]
        psk = None
        if ike["psk_file"]:
            psk = _read_psk(ike["psk_file"])
        from .kernel.cpu import esp_prefers_chacha
        return ResponderPolicy(
            identity=cfg["box"]["identity"],
            signer=Signer(self.credentials.key),
            cert_chain=self.credentials.chain_der,
            server_auth=ike["server_auth"],
            psk=psk,
            profile=ike["proposals"],
            prefer_chacha=esp_prefers_chacha(),
            eap_factory=self._eap_server,
            user_exists=self._user_exists,
            pool=self.pool,
            dns=tuple(cfg["pool"]["dns"]),
            lan=tuple(cfg["lan"]["subnets"]),
            half_open_timeout=ike["half_open_timeout"],
            eap_timeout=ike["eap_timeout"],
            dpd_interval=ike["dpd_interval"],
            child_rekey_time=ike["child_rekey_time"],
            fragment_size=ike["fragment_size"],
            reqid_base=OWNED_REQIDS.start,
            reqid_count=len(OWNED_REQIDS),
        )

    def _eap_server(self, identity: str | None) -> EapServer:
        self.users.reload_if_changed()
        return EapServer(self.users, methods=tuple(self.cfg["ike"]["eap_methods"]),
                         identity=identity, server_name=self.cfg["box"]["identity"][:32])

    def _user_exists(self, name: str) -> bool:
        self.users.reload_if_changed()
        return self.users.get(name) is not None

    def apply_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Validates, saves and applies a change; on any error nothing changes."""
        try:
            new = config_mod.merge(self.cfg, changes)
        except config_mod.ConfigError as exc:
            raise ControlError(str(exc)) from None
        restart = config_mod.needs_restart(self.cfg, new)
        if restart:
            raise ControlError(f"{', '.join(restart)}: changing this needs a restart of the "
                               f"daemon; edit {self.config_path} and restart it")
        if new["ike"]["psk_file"]:
            try:
                _read_psk(new["ike"]["psk_file"])  # refuse before anything is written
            except config_mod.ConfigError as exc:
                raise ControlError(str(exc)) from None
        changed = config_mod.diff_sections(self.cfg, new)
        if self.config_path:
            try:
                config_mod.save(self.config_path, new)
            except OSError as exc:
                raise ControlError(f"could not write {self.config_path}: {exc.strerror}") \
                    from None
        old = self.cfg
        self.cfg = new
        if new["pool"]["ipv4"] != old["pool"]["ipv4"] or \
                new["pool"]["ipv6"] != old["pool"]["ipv6"]:
            # Sessions keep their addresses; the new pool knows them as taken.
            pool = AddressPool(new["pool"]["ipv4"], new["pool"]["ipv6"])
            for ike_sa in self.responder.sas.values():
                if ike_sa.lease is not None:
                    pool.adopt(ike_sa.lease)
            self.pool = pool
            log.info("address pool changed; existing sessions keep their addresses")
        identity = new["box"]["identity"]
        if identity != old["box"]["identity"] and identity not in self.certificate_names():
            self.credentials = self.pki.regenerate([identity])
        self.responder.policy = self._policy()
        self._apply_forwarding()
        log.info("configuration changed: %s", ", ".join(changed) or "nothing")
        self._publish("config_changed", {"changed": changed})
        return {"changed": changed}

    def certificate_names(self) -> list[str]:
        from cryptography import x509
        try:
            san = self.credentials.cert.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return []
        return [str(n.value) for n in san]

    # --- running -------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self._open_kernel()
        try:
            self._open_sockets()
        except OSError as exc:
            log.error("cannot listen for IKE: %s", exc)
            return 1
        for sock in self.sockets:
            loop.add_reader(sock.fileno(), self._readable, sock)
        self.control = ControlServer(self.cfg["control"]["socket"], self._command,
                                     self.status, self.cfg["control"]["group"])
        await self.control.start()
        self._apply_forwarding()
        expire_fd = self._expire_fd()
        if expire_fd is not None:
            loop.add_reader(expire_fd, self._kernel_expired)
        self.ready = True
        _sd_notify("READY=1\nSTATUS=answering IKE")
        log.info("ikebox %s ready: identity %s, listening on %s, control %s", __version__,
                 self.cfg["box"]["identity"], ", ".join(self.listening()),
                 self.cfg["control"]["socket"])
        timers = asyncio.create_task(self._timers())
        await self._stop.wait()
        timers.cancel()
        log.info("stopping: telling clients and removing kernel state")
        self._carry_out(self.responder.shutdown(time.time()))
        for sock in self.sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        await self.control.close()
        self._close_kernel()
        return 0

    def listening(self) -> list[str]:
        return [f"{'[' + s.address + ']' if ':' in s.address else s.address}:{s.port}"
                for s in self.sockets]

    def _open_sockets(self) -> None:
        ike = self.cfg["ike"]
        for address in ike["addresses"]:
            for port, natt in ((ike["port"], False), (ike["natt_port"], True)):
                try:
                    sock = IkeSocket(address, port, natt)
                except OSError as exc:
                    if ":" in address and exc.errno in (97, 99):
                        log.info("IPv6 is not available here; listening on IPv4 only")
                        break
                    raise OSError(f"{address}:{port}: {exc.strerror}") from None
                if natt and self.kernel is not None:
                    try:
                        from .kernel.encap import set_espinudp
                        set_espinudp(sock.sock)
                    except OSError as exc:
                        log.warning("UDP encapsulation unavailable on %s:%d (%s): NAT-T "
                                    "ESP will not reach the kernel", address, port,
                                    exc.strerror)
                self.sockets.append(sock)

    def _open_kernel(self) -> None:
        if self.kernel is not None:
            return
        threading.Thread(target=_preload_esp_modules, name="modprobe", daemon=True).start()
        try:
            from .kernel.xfrm import Xfrm
            self.kernel = Xfrm()
        except Exception as exc:  # noqa: BLE001 - the box still answers IKE without it
            log.error("cannot open the kernel's XFRM interface: %s; CHILD_SAs will fail", exc)
            self.kernel = None
            return
        try:
            stale = self.kernel.flush_owned()
        except Exception as exc:  # noqa: BLE001
            log.warning("could not clean up old kernel state: %s", exc)
            stale = 0
        if stale:
            log.info("removed %d kernel states and policies left by an earlier run", stale)

    def _close_kernel(self) -> None:
        if self.kernel is None:
            return
        try:
            self.kernel.flush_owned()
        except Exception as exc:  # noqa: BLE001
            log.warning("could not remove kernel state on exit: %s", exc)
        if self.forwarding is not None:
            try:
                self.forwarding.stop()
            except Exception as exc:  # noqa: BLE001
                log.warning("could not remove the forwarding/NAT setup: %s", exc)

    def _apply_forwarding(self) -> None:
        if self.kernel is None:
            return
        from .kernel.forwarding import Forwarding
        wanted = Forwarding(self.cfg["pool"]["ipv4"], self.cfg["pool"]["ipv6"],
                            tuple(self.cfg["lan"]["subnets"]), self.cfg["lan"]["nat"])
        try:
            if self.forwarding is not None:
                self.forwarding.stop()
            wanted.start()
            self.forwarding = wanted
        except Exception as exc:  # noqa: BLE001 - tunnels still come up
            log.warning("could not set up forwarding/NAT for the pool: %s", exc)

    def _expire_fd(self) -> int | None:
        try:
            return self.kernel.expire_socket.fileno() if self.kernel is not None else None
        except Exception:  # noqa: BLE001
            return None

    def _kernel_expired(self) -> None:
        from .kernel.xfrm import MappingEvent
        try:
            events = self.kernel.read_events()
        except Exception as exc:  # noqa: BLE001
            log.warning("reading kernel XFRM events failed: %s", exc)
            return
        for event in events:
            if isinstance(event, MappingEvent):
                self._carry_out(self.responder.esp_moved(
                    event.spi, (event.address, event.port), time.time()))
                continue
            log.info("kernel: SA %08x (reqid %d) reached its %s lifetime", event.spi,
                     event.reqid, "hard" if event.hard else "soft")
            self._carry_out(self.responder.child_expired(event.spi, event.hard, time.time(),
                                                         reqid=event.reqid))

    def _readable(self, sock: IkeSocket) -> None:
        for _ in range(64):  # bounded, so one busy socket cannot starve the others
            got = sock.receive()
            if got is None:
                return
            data, remote, local = got
            try:
                self._carry_out(self.responder.receive(data, remote, local, time.time()))
            except Exception:  # noqa: BLE001 - one bad datagram must not stop the box
                log.exception("internal error handling a datagram from %s:%d; dropped",
                              remote[0], remote[1])
        self._wake.set()

    async def _timers(self) -> None:
        watchdog = _watchdog_interval()
        last_ping = 0.0
        while True:
            now = time.time()
            deadline = self.responder.next_deadline()
            wait = 1.0 if deadline is None else max(0.05, min(1.0, deadline - now))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass
            now = time.time()
            self._carry_out(self.responder.tick(now))
            if watchdog and now - last_ping >= watchdog:
                _sd_notify("WATCHDOG=1")
                last_ping = now

    # --- actions -------------------------------------------------------------------

    def _carry_out(self, actions: list[act.Action]) -> None:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            if isinstance(action, act.Send):
                self._send(action)
            elif isinstance(action, act.InstallChild):
                queue.extend(self._install(action))
            elif isinstance(action, act.DeleteChild):
                self._delete_child(action)
            elif isinstance(action, act.MoveChild):
                self._move_child(action)
            elif isinstance(action, act.Trace):
                self._trace(action.record)
            elif isinstance(action, act.Failure):
                self._failure(action)
            elif isinstance(action, act.SessionUp):
                log.info("session up: user %s from %s got %s (%s)", action.session["user"],
                         action.session["remote"], ", ".join(action.session["assigned"]),
                         action.session["esp_cipher"] or "no CHILD_SA")
                self._publish("session_up", action.session)
            elif isinstance(action, act.SessionDown):
                self._publish("session_down", {"session": action.session,
                                               "reason": action.reason})
            elif isinstance(action, act.NegotiationStarted):
                self._publish("negotiation_started", {"ike_sa": action.ike_sa,
                                                      "peer": action.peer})
            elif isinstance(action, act.NegotiationEnded):
                self._publish("negotiation_ended", {"ike_sa": action.ike_sa,
                                                    "peer": action.peer,
                                                    "established": action.established})

    def _send(self, action: act.Send) -> None:
        local_ip, local_port = action.local
        family6 = ":" in action.remote[0]
        sock = next((s for s in self.sockets if s.port == local_port and
                     (":" in s.address) == family6 and
                     s.address in (local_ip, "0.0.0.0", "::")), None)
        if sock is None:
            sock = next((s for s in self.sockets if s.port == local_port and
                         (":" in s.address) == family6), None)
        if sock is None:
            log.warning("no socket to answer %s from port %d", action.remote[0], local_port)
            return
        for datagram in action.datagrams:
            sock.send(datagram, action.remote, local_ip)

    def _install(self, action: act.InstallChild) -> list[act.Action]:
        child = action.child
        error = None
        if self.kernel is None:
            error = "the kernel's XFRM interface is not available"
        else:
            try:
                self.kernel.install_child(child_record(action.local, action.remote, child))
            except Exception as exc:  # noqa: BLE001 - reported to the client and trace
                error = str(exc) or exc.__class__.__name__
        if error:
            log.warning("installing CHILD_SA reqid %d failed: %s", child.reqid, error)
        return self.responder.install_result(action.ike_sa, child.reqid, error, time.time())

    def _move_child(self, action: act.MoveChild) -> None:
        if self.kernel is None:
            return
        child = action.child
        old = child_record(action.old_local, action.old_remote, child, action.old_encap)
        new = child_record(action.local, action.remote, child)
        try:
            self.kernel.move_child(old, new)
        except Exception as exc:  # noqa: BLE001 - the kernel put it back; retried later
            log.error("CHILD_SA reqid %d could not follow the client to %s:%d: %s; it "
                      "stays where it was until the next try", child.reqid,
                      action.remote[0], action.remote[1], exc)
            self._carry_out(self.responder.move_failed(
                action.ike_sa, child, action.old_local, action.old_remote,
                action.old_encap, time.time(), moved_to=(action.local, action.remote)))

    def _delete_child(self, action: act.DeleteChild) -> None:
        if self.kernel is None:
            return
        try:
            self.kernel.delete_child(child_record(action.local, action.remote, action.child))
        except Exception as exc:  # noqa: BLE001
            log.warning("removing CHILD_SA reqid %d failed: %s", action.child.reqid, exc)

    def _trace(self, record: dict[str, Any]) -> None:
        # The responder already logged the record at DEBUG (ikebox.ike).
        self.traces.append(record)
        self._publish("trace", record, trace_level=record["level"])

    def _failure(self, action: act.Failure) -> None:
        entry = {"time": time.time(), "peer": action.peer, "user": action.user,
                 "class": action.klass, "step": action.step, "reason": action.reason}
        self.failures.appendleft(entry)
        self._publish("failure", entry)

    def _publish(self, event: str, fields: dict[str, Any], trace_level: int = 0) -> None:
        if self.control is not None:
            self.control.publish(event, fields, trace_level)

    # --- control commands ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        counts = self.responder.counts()
        return {"version": __version__, "started": self.started,
                "uptime": round(time.time() - self.started, 1), "ready": self.ready,
                "listen": self.listening(), "identity": self.cfg["box"]["identity"],
                "wan": wan_status(), "pool": {"in_use": self.pool.in_use()}, **counts}

    async def _command(self, cmd: str, args: dict[str, Any]) -> Any:
        handler = getattr(self, f"cmd_{cmd}", None)
        if handler is None:
            raise ControlError(f"unknown command {cmd!r}")
        try:
            return handler(**args)
        except (TypeError, ValueError) as exc:
            raise ControlError(f"{cmd}: bad arguments ({exc})") from None
        except UserError as exc:
            raise ControlError(str(exc)) from None

    def cmd_status(self) -> dict[str, Any]:
        return self.status()

    def cmd_show_ike_sas(self, detail: bool = False) -> list[dict[str, Any]]:
        return self.responder.ike_sas(detail)

    def cmd_show_sessions(self) -> list[dict[str, Any]]:
        sessions = self.responder.sessions()
        for session in sessions:
            session.update(self._counters_for(session))
        return sessions

    def _counters_for(self, session: dict[str, Any]) -> dict[str, int]:
        totals = {"bytes_in": 0, "bytes_out": 0, "packets_in": 0, "packets_out": 0}
        ike_sa = self.responder.find(session["ike_sa"])
        if self.kernel is None or ike_sa is None:
            return totals
        for child in ike_sa.children:
            if not child.installed:
                continue
            try:
                counters = self.kernel.child_counters(
                    child_record(ike_sa.local, ike_sa.remote, child))
            except Exception:  # noqa: BLE001 - counters are best effort for a view
                continue
            for key in totals:
                totals[key] += int(counters.get(key, 0))
        return totals

    def cmd_show_ipsec_sas(self) -> list[dict[str, Any]]:
        out = []
        for ike_sa in list(self.responder.sas.values()):
            for child in ike_sa.children:
                entry = {"ike_sa": ike_sa.name, "user": ike_sa.user, "peer": ike_sa.peer,
                         "reqid": child.reqid, "spi_in": child.spi_in.hex(),
                         "spi_out": child.spi_out.hex(), "cipher": child.describe(),
                         "ts_local": [t.describe() for t in child.ts_r],
                         "ts_remote": [t.describe() for t in child.ts_i],
                         "encap": list(child.encap) if child.encap else None,
                         "installed": child.installed, "install_error": child.install_error,
                         "age": round(time.time() - child.created, 1)}
                if child.installed and self.kernel is not None:
                    try:
                        entry["kernel"] = self.kernel.child_counters(
                            child_record(ike_sa.local, ike_sa.remote, child))
                    except Exception as exc:  # noqa: BLE001
                        entry["kernel_error"] = str(exc)
                out.append(entry)
        return out

    def cmd_disconnect(self, session: str | None = None, user: str | None = None
                       ) -> dict[str, int]:
        targets = [s for s in self.responder.sas.values() if s.established is not None and
                   ((session and session in (s.session_id, s.name)) or
                    (user and s.user == user))]
        if not targets:
            raise ControlError("no such session")
        for ike_sa in targets:
            self._carry_out(self.responder.disconnect(ike_sa.name, "disconnected by the "
                                                      "operator", time.time()))
        return {"closed": len(targets)}

    def cmd_user_list(self) -> list[dict[str, Any]]:
        self.users.reload_if_changed()
        return self.users.list()

    def cmd_user_add(self, name: str, password: str, enabled: bool = True,
                     allow_md5: bool = False) -> dict[str, Any]:
        self.users.add(name, password, enabled=enabled, allow_md5=allow_md5)
        log.info("user %s added", name)
        return {}

    def cmd_user_del(self, name: str) -> dict[str, Any]:
        self.users.delete(name)
        log.info("user %s deleted", name)
        return {}

    def cmd_user_set(self, name: str, password: str | None = None,
                     enabled: bool | None = None) -> dict[str, Any]:
        self.users.set(name, password=password, enabled=enabled)
        log.info("user %s changed", name)
        if enabled is False:
            for ike_sa in [s for s in self.responder.sas.values() if s.user == name]:
                self._carry_out(self.responder.disconnect(ike_sa.name, "user disabled",
                                                          time.time()))
        return {}

    def cmd_failures(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self.failures)[:max(0, int(limit))]

    def cmd_trace(self, limit: int = 200, ike_sa: str | None = None) -> list[dict[str, Any]]:
        records = [r for r in self.traces if ike_sa is None or r.get("ike_sa") == ike_sa]
        return records[-max(0, int(limit)):]

    def cmd_config_get(self) -> dict[str, Any]:
        return self.cfg

    def cmd_config_set(self, config: dict[str, Any]) -> dict[str, Any]:
        return self.apply_config(config)

    def cmd_cert_regenerate(self, names: list[str] | None = None) -> dict[str, Any]:
        names = names or [self.cfg["box"]["identity"]]
        for name in names:
            if config_mod._identity(name):  # noqa: SLF001 - same rule as the identity
                raise ControlError(f"{name!r} is not a host name or address")
        self.credentials = self.pki.regenerate(list(names))
        self.responder.policy = self._policy()
        cert = self.credentials.cert
        return {"fingerprint": self.credentials.fingerprint,
                "subject": cert.subject.rfc4514_string(),
                "not_after": cert.not_valid_after_utc.isoformat()}

    def cmd_ca_cert(self) -> dict[str, Any]:
        return {"pem": self.pki.ca_pem()}


_CURRENT = object()


def child_record(local: tuple[str, int], remote: tuple[str, int], child: Any,
                 encap: Any = _CURRENT) -> ChildRecord:
    """The kernel's view of a CHILD_SA: plain addresses, SPIs, algorithm names, keys.
    encap overrides the child's own (box port, peer port), e.g. where it was before
    the peer moved."""
    from .ike import crypto
    from .kernel.records import EspKeys
    chosen = child.chosen
    cipher = crypto.get_cipher(chosen.encr, chosen.key_bits)
    integ = None if chosen.aead else crypto.get_integ(chosen.integ)
    enc_alg = crypto.esp_kernel_name(cipher)
    auth_alg = crypto.esp_auth_kernel_name(integ) if integ else None
    trunc = integ.icv_size * 8 if integ else 0
    icv = cipher.icv_size * 8 if cipher.aead else 0

    def keys(spi: bytes, enc: bytes, auth: bytes) -> EspKeys:
        return EspKeys(int.from_bytes(spi, "big"), enc_alg, enc, icv, auth_alg, auth, trunc)

    k = child.keys
    local_ts = tuple(str(n) for t in child.ts_r for n in t.networks())
    remote_ts = tuple(str(n) for t in child.ts_i for n in t.networks())
    # The box receives what the initiator sends (i->r keys) and sends with the r->i keys.
    return ChildRecord(
        reqid=child.reqid, local=local[0], remote=remote[0],
        inbound=keys(child.spi_in, k.encr_i, k.integ_i),
        outbound=keys(child.spi_out, k.encr_r, k.integ_r),
        local_ts=local_ts, remote_ts=remote_ts,
        encap=child.encap if encap is _CURRENT else encap,
        esn=chosen.esn,
        soft_lifetime_s=child.soft_lifetime_s,
        hard_lifetime_s=child.hard_lifetime_s)


def wan_status() -> dict[str, Any]:
    """The interface with the default route and its address, from the kernel's tables."""
    iface = None
    try:
        with open("/proc/net/route") as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if len(fields) > 2 and fields[1] == "00000000":
                    iface = fields[0]
                    break
    except OSError:
        pass
    address = None
    if iface:
        try:
            out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", iface],
                                 capture_output=True, text=True, timeout=2).stdout
            parts = out.split()
            if "inet" in parts:
                address = parts[parts.index("inet") + 1].split("/")[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return {"interface": iface, "address": address, "default_route": iface is not None}


def _read_psk(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            psk = fh.read().strip()
    except OSError as exc:
        raise config_mod.ConfigError(f"ike.psk_file: cannot read {path}: {exc.strerror}") \
            from None
    if len(psk) < 16:
        raise config_mod.ConfigError("ike.psk_file: the PSK must be at least 16 characters")
    return psk


# ESP and the ciphers of our suites, by the kernel's module aliases. Loading them on the
# first client's install took seconds under emulation, long enough for the client to
# retransmit; loading them at start moves that wait to where nobody is waiting.
ESP_MODULES = ("esp4", "esp6", "crypto-rfc4106(gcm(aes))", "crypto-cbc(aes)",
               "crypto-hmac(sha256)", "crypto-rfc7539esp(chacha20,poly1305)")


def _preload_esp_modules() -> None:
    try:
        subprocess.run(["modprobe", "-q", "-a", *ESP_MODULES], capture_output=True,
                       timeout=60)
    except (OSError, subprocess.SubprocessError):
        pass  # built in, or no modprobe: the kernel loads what it needs on first use


def _sd_notify(message: str) -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
            sock.sendall(message.encode())
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)


def _watchdog_interval() -> float:
    usec = os.environ.get("WATCHDOG_USEC")
    try:
        return int(usec) / 2_000_000 if usec else 0.0
    except ValueError:
        return 0.0


def run(config_path: str | None) -> int:
    try:
        daemon = Daemon(config_path)
    except (config_mod.ConfigError, UserError) as exc:
        log.error("refusing to start: %s", exc)
        return 2
    return asyncio.run(daemon.run())
