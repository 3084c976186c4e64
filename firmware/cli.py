"""The `ikebox` command: the daemon, and what an operator checks and changes."""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import logging
import os
import sys
import time
from typing import Any

from .control import ControlClient, ControlError, DaemonUnreachable, socket_path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The LED service and the web UI own their options; hand them the rest untouched.
    if argv and argv[0] == "leds":
        from hw.service import main as leds_main
        return leds_main(argv[1:])
    if argv and argv[0] == "webui":
        from webui.app import main as webui_main
        return webui_main(argv[1:])

    parser = _parser()
    args = parser.parse_args(_global_options_first(argv))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except DaemonUnreachable as exc:
        print(f"ikebox: {exc}. Is `ikebox daemon` running?", file=sys.stderr)
        return 3
    except ControlError as exc:
        print(f"ikebox: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _global_options_first(argv: list[str]) -> list[str]:
    """--config and --socket belong to `ikebox` itself, but people write them after the
    subcommand too (`ikebox daemon --config FILE`): accept them anywhere."""
    hoisted: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        if arg in ("--config", "--socket") and i + 1 < len(argv):
            hoisted += argv[i:i + 2]
            i += 2
            continue
        if arg.startswith(("--config=", "--socket=")):
            hoisted.append(arg)
        else:
            rest.append(arg)
        i += 1
    return hoisted + rest


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ikebox", description="ikebox: a plug-in IKEv2 VPN box")
    p.add_argument("--socket", help="control socket (default: $IKEBOX_CONTROL or "
                   "/run/ikebox/control.sock)")
    p.add_argument("--config", default=os.environ.get("IKEBOX_CONFIG"),
                   help="config file (default /etc/ikebox/ikebox.toml)")
    sub = p.add_subparsers()

    d = sub.add_parser("daemon", help="run the IKEv2 responder")
    d.add_argument("--debug", action="store_true", help="log the exchange trace (DEBUG)")
    d.set_defaults(func=_daemon)

    show = sub.add_parser("show", help="show state").add_subparsers()
    s = show.add_parser("ike-sa", help="IKE SAs")
    s.add_argument("--detail", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_show_ike_sa)
    s = show.add_parser("ipsec-sa", help="CHILD SAs with the kernel's counters")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_show_ipsec_sa)
    s = show.add_parser("sessions", help="connected users")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_show_sessions)
    s = show.add_parser("failures", help="recent failed connection attempts")
    s.add_argument("--json", action="store_true")
    s.add_argument("--limit", type=int, default=20)
    s.set_defaults(func=_show_failures)
    s = show.add_parser("status", help="daemon status")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_show_status)

    u = sub.add_parser("user", help="VPN users").add_subparsers()
    a = u.add_parser("add", help="add a user (the password is asked for, or read from "
                     "stdin with --password-stdin)")
    a.add_argument("name")
    a.add_argument("--password-stdin", action="store_true")
    a.add_argument("--allow-md5", action="store_true",
                   help="also allow EAP-MD5 (stores the password itself; avoid)")
    a.add_argument("--disabled", action="store_true")
    a.set_defaults(func=_user_add)
    a = u.add_parser("del", help="delete a user")
    a.add_argument("name")
    a.set_defaults(func=_user_del)
    a = u.add_parser("list", help="list users")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_user_list)
    a = u.add_parser("set", help="enable, disable or change a password")
    a.add_argument("name")
    g = a.add_mutually_exclusive_group()
    g.add_argument("--enable", action="store_true")
    g.add_argument("--disable", action="store_true")
    a.add_argument("--password", action="store_true", help="ask for a new password")
    a.add_argument("--password-stdin", action="store_true")
    a.set_defaults(func=_user_set)

    x = sub.add_parser("disconnect", help="end a session")
    x.add_argument("session", nargs="?", help="session id (from show sessions)")
    x.add_argument("--user")
    x.set_defaults(func=_disconnect)

    t = sub.add_parser("debug", help="follow the exchange trace live")
    t.add_argument("--level", type=int, default=1, choices=(1, 2, 3),
                   help="1 steps, 2 platform detail, 3 decoded payloads")
    t.add_argument("--history", type=int, default=20, help="recent records to show first")
    t.set_defaults(func=_debug)

    c = sub.add_parser("config", help="configuration").add_subparsers()
    k = c.add_parser("check", help="validate a config file without applying it")
    k.add_argument("file")
    k.set_defaults(func=_config_check)
    k = c.add_parser("show", help="the running configuration")
    k.set_defaults(func=_config_show)
    sub.add_parser("leds", help="run the status LED service (see `ikebox leds --help`)")
    sub.add_parser("webui", help="run the web page (see `ikebox webui --help`)")
    return p


def _client(args: argparse.Namespace) -> ControlClient:
    """--socket, else $IKEBOX_CONTROL, else the config file's socket, else the default."""
    configured = None
    if args.socket is None and args.config and os.path.exists(args.config):
        from . import config as config_mod
        try:
            configured = config_mod.load(args.config)["control"]["socket"]
        except config_mod.ConfigError:
            configured = None
    return ControlClient(args.socket or socket_path(configured))


def _call(args: argparse.Namespace, cmd: str, **kw: Any) -> Any:
    with _client(args) as client:
        return client.call(cmd, **kw)


# --- daemon ----------------------------------------------------------------------------

def _daemon(args: argparse.Namespace) -> int:
    from . import daemon
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.debug:
        # pyroute2 and asyncio chatter is platform detail, not operator news.
        logging.getLogger("pyroute2").setLevel(logging.WARNING)
    if args.config and not os.path.exists(args.config):
        # A mistyped path must not quietly run the box on its defaults.
        print(f"ikebox: no config file {args.config} (without --config the daemon reads "
              f"/etc/ikebox/ikebox.toml, or runs on its embedded default if that is "
              f"missing)", file=sys.stderr)
        return 2
    return daemon.run(args.config or "/etc/ikebox/ikebox.toml")


# --- show ------------------------------------------------------------------------------

def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    return _duration(time.time() - ts)


def _duration(secs: float) -> str:
    secs = int(secs)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _show_ike_sa(args: argparse.Namespace) -> int:
    sas = _call(args, "show_ike_sas", detail=args.detail)
    if args.json:
        _print_json(sas)
        return 0
    if not sas:
        print("no IKE SAs")
        return 0
    for sa in sas:
        nat = "peer behind NAT" if sa["nat"]["peer_behind_nat"] else \
            "box behind NAT" if sa["nat"]["box_behind_nat"] else "no NAT"
        print(f"IKE SA {sa['name']}  {sa['state'].upper()}  role {sa['role']}")
        print(f"  local {sa['local']}  remote {sa['remote']}  ({nat})")
        print(f"  user {sa['user'] or '-'}  cipher {sa['cipher']}  age {_duration(sa['age'])}")
        if args.detail:
            print(f"  SPIs i {sa['spi_i']} r {sa['spi_r']}")
            print(f"  identities: local {sa['id_local']}  remote {sa['id_remote']}")
            print(f"  auth: box {sa['auth_local'] or '-'}, client {sa['auth_remote']}")
            print(f"  message IDs: expecting {sa['msg_id_expected']}, "
                  f"next own {sa['msg_id_next_own']}; fragmentation "
                  f"{'on' if sa['fragmentation'] else 'off'}; MOBIKE "
                  f"{'on' if sa.get('mobike') else 'off'}")
            if sa.get("client_version"):
                print(f"  client: {sa['client_version']}")
            print(f"  assigned: {', '.join(sa['assigned']) or '-'}")
            for child in sa["child_sas"]:
                state = "installed" if child["installed"] else \
                    f"NOT installed: {child['install_error']}" if child["install_error"] \
                    else "pending"
                print(f"  CHILD_SA reqid {child['reqid']:#x}: {child['cipher']}  "
                      f"SPI in {child['spi_in']} out {child['spi_out']}  {state}")
                print(f"    {', '.join(child['ts_i'])} === {', '.join(child['ts_r'])}"
                      + (f"  UDP-encap {child['encap'][0]}->{child['encap'][1]}"
                         if child["encap"] else ""))
    return 0


def _show_ipsec_sa(args: argparse.Namespace) -> int:
    sas = _call(args, "show_ipsec_sas")
    if args.json:
        _print_json(sas)
        return 0
    if not sas:
        print("no CHILD SAs")
        return 0
    for c in sas:
        print(f"peer {c['peer']}  user {c['user'] or '-'}  reqid {c['reqid']:#x}")
        print(f"  selectors: local {', '.join(c['ts_local'])}  remote "
              f"{', '.join(c['ts_remote'])}")
        print(f"  transform {c['cipher']}  mode tunnel"
              + (f", UDP-encapsulated ({c['encap'][0]}->{c['encap'][1]})" if c["encap"]
                 else ""))
        print(f"  SPI in {c['spi_in']}  out {c['spi_out']}  age {_duration(c['age'])}")
        if not c["installed"]:
            print(f"  NOT in the kernel: {c['install_error'] or 'pending'}")
        k = c.get("kernel")
        if k:
            print(f"  in:  {k.get('packets_in', 0)} packets, {k.get('bytes_in', 0)} bytes;"
                  f"  out: {k.get('packets_out', 0)} packets, {k.get('bytes_out', 0)} bytes")
            errors = {key: v for key, v in k.items() if key.endswith("_errors") or
                      key.endswith("_failed")}
            if errors:
                print("  errors: " + ", ".join(f"{key} {v}" for key, v in errors.items()))
        elif c.get("kernel_error"):
            print(f"  kernel counters unavailable: {c['kernel_error']}")
    return 0


def _show_sessions(args: argparse.Namespace) -> int:
    sessions = _call(args, "show_sessions")
    if args.json:
        _print_json(sessions)
        return 0
    if not sessions:
        print("no sessions")
        return 0
    print(f"{'ID':8}  {'USER':16} {'PUBLIC':22} {'NAT':3}  {'ADDRESS':15} {'FOR':>9}  "
          f"{'IN':>10} {'OUT':>10}  CIPHER / TUNNEL")
    for s in sessions:
        print(f"{s['id']:8}  {(s['user'] or '-'):16} {s['remote']:22} "
              f"{'yes' if s['natt'] else 'no':3}  {', '.join(s['assigned']) or '-':15} "
              f"{_ago(s['established']):>9}  {s['bytes_in']:>10} {s['bytes_out']:>10}  "
              f"{s['esp_cipher'] or '-'} / {s['child_state']}")
    return 0


def _show_failures(args: argparse.Namespace) -> int:
    failures = _call(args, "failures", limit=args.limit)
    if args.json:
        _print_json(failures)
        return 0
    if not failures:
        print("no failed connection attempts")
        return 0
    for f in failures:
        when = datetime.datetime.fromtimestamp(f["time"]).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{when}  {f['peer'] or '-'}  user {f['user'] or '-'}  [{f['class']}] at "
              f"{f['step']}: {f['reason']}")
    return 0


def _show_status(args: argparse.Namespace) -> int:
    status = _call(args, "status")
    if args.json:
        _print_json(status)
        return 0
    wan = status["wan"]
    print(f"ikebox {status['version']}  identity {status['identity']}  up "
          f"{_duration(status['uptime'])}")
    print(f"listening: {', '.join(status['listen'])}")
    print(f"WAN: {wan.get('interface') or '-'} {wan.get('address') or 'no address'}"
          f"{'' if wan.get('default_route') else ' (no default route)'}")
    print(f"sessions {status['sessions']}, IKE SAs {status['ike_sas']}, negotiating "
          f"{status['half_open']}")
    return 0


# --- users ----------------------------------------------------------------------------

def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ControlError("the passwords differ")
    return first


def _user_store(args: argparse.Namespace, create: bool = True):  # noqa: ANN202
    """The user file itself, for when no daemon runs (first setup, image building).
    Listing creates nothing: a read-only command leaves no directory behind."""
    from . import config as config_mod
    from .users import UserStore
    cfg = config_mod.load(args.config or "/etc/ikebox/ikebox.toml")
    state_dir = cfg["box"]["state_dir"]
    if create:
        os.makedirs(state_dir, mode=0o711, exist_ok=True)
    return UserStore(os.path.join(state_dir, "users.json"))


def _users(args: argparse.Namespace, cmd: str, **kw: Any) -> Any:
    from .users import UserError
    try:
        return _call(args, cmd, **kw)
    except DaemonUnreachable:
        store = _user_store(args, create=cmd != "user_list")
        try:
            if cmd == "user_add":
                store.add(kw["name"], kw["password"], enabled=kw["enabled"],
                          allow_md5=kw["allow_md5"])
            elif cmd == "user_del":
                store.delete(kw["name"])
            elif cmd == "user_set":
                store.set(kw["name"], password=kw.get("password"), enabled=kw.get("enabled"))
            elif cmd == "user_list":
                return store.list()
        except UserError as exc:
            raise ControlError(str(exc)) from None
        return {}


def _user_add(args: argparse.Namespace) -> int:
    password = _read_password(args.password_stdin)
    _users(args, "user_add", name=args.name, password=password, enabled=not args.disabled,
           allow_md5=args.allow_md5)
    print(f"user {args.name} added")
    return 0


def _user_del(args: argparse.Namespace) -> int:
    _users(args, "user_del", name=args.name)
    print(f"user {args.name} deleted")
    return 0


def _user_set(args: argparse.Namespace) -> int:
    kw: dict[str, Any] = {"name": args.name}
    if args.enable or args.disable:
        kw["enabled"] = bool(args.enable)
    if args.password or args.password_stdin:
        kw["password"] = _read_password(args.password_stdin)
    if len(kw) == 1:
        raise ControlError("nothing to change: use --enable, --disable or --password")
    _users(args, "user_set", **kw)
    print(f"user {args.name} changed")
    return 0


def _user_list(args: argparse.Namespace) -> int:
    users = _users(args, "user_list")
    if args.json:
        _print_json(users)
        return 0
    for u in users:
        print(f"{u['name']:24} {'enabled' if u['enabled'] else 'disabled':8} "
              f"{', '.join(u['methods'])}")
    if not users:
        print("no users; add one with `ikebox user add NAME`")
    return 0


# --- the rest ---------------------------------------------------------------------------

def _disconnect(args: argparse.Namespace) -> int:
    if not args.session and not args.user:
        raise ControlError("name a session id or --user")
    result = _call(args, "disconnect", session=args.session, user=args.user)
    print(f"closed {result['closed']} session(s)")
    return 0


def _format_trace(r: dict[str, Any]) -> str:
    when = datetime.datetime.fromtimestamp(r["time"]).strftime("%H:%M:%S.%f")[:-3]
    sa = (r.get("ike_sa") or "-")[:12]
    msg = f"#{r['msg_id']}" if r.get("msg_id") is not None else ""
    line = f"{when} {sa:12} {r.get('exchange') or '':15} {msg:4} {r.get('step'):14} " \
        f"{r.get('text')}"
    for item in r.get("detail") or []:
        line += f"\n{'':48}{item}"
    return line


def _debug(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.timeout = 5
        for record in client.call("trace", limit=args.history):
            if record["level"] <= args.level:
                print(_format_trace(record))
        client.subscribe(trace_level=args.level)
        print(f"-- following the trace at level {args.level}; Ctrl-C to stop", flush=True)
        for event in client.events(timeout=60):
            if event is None:
                continue
            if event["event"] == "trace":
                print(_format_trace(event), flush=True)
            elif event["event"] in ("session_up", "session_down", "failure"):
                print(f"** {event['event']}: " + json.dumps(
                    {k: v for k, v in event.items() if k not in ("event", "time")},
                    default=str), flush=True)
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from . import config as config_mod
    if not os.path.exists(args.file):
        print(f"invalid: {args.file}: no such file", file=sys.stderr)
        return 1
    try:
        config_mod.load(args.file)
    except config_mod.ConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: valid")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    from . import config as config_mod
    print(config_mod.dumps(_call(args, "config_get")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
