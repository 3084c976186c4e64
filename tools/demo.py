"""`make demo`: a real IKEv2 client connects to the box, end to end.

Two network namespaces joined by a veth pair: Debian's strongSwan as the client, and
`ikebox daemon` on its embedded default configuration as the box. The client
authenticates with EAP-MSCHAPv2 against the box's own certificate, gets an address
from the box's pool and negotiates its CHILD_SA. Then the demo shows what an operator
would look at, and removes everything it made.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import textwrap

from tests.harness.ikebox import Box
from tests.harness.netns import Topology
from tests.harness.strongswan import Charon, Conn


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def host_has_esp() -> bool:
    try:
        with open("/proc/net/xfrm_stat"):
            pass
    except OSError:
        return False
    return os.path.exists("/sys/module/esp4") or _builtin("esp4")


def _builtin(module: str) -> bool:
    release = os.uname().release
    try:
        with open(f"/lib/modules/{release}/modules.builtin") as fh:
            return any(f"/{module}.ko" in line for line in fh)
    except OSError:
        return False


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root (it creates network namespaces)", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="ikebox-demo-")
    topo = Topology("demo")
    box = charon = None
    try:
        banner("1. Two network namespaces joined by a veth pair")
        print(f"client {topo.client_ip}  <-->  box {topo.box_ip}  (box LAN {topo.lan_ip})")

        banner("2. Starting `ikebox daemon` on its embedded default")
        box = Box(topo.box, os.path.join(work, "box"), identity=topo.box_ip)
        box.start()
        status = box.call("status")
        print(f"listening on {', '.join(status['listen'])}; identity {status['identity']}")
        password = secrets.token_urlsafe(12)
        box.cli("user", "add", "alice", "--password-stdin", input=password + "\n")
        print("added VPN user alice (password generated; it is not printed)")

        banner("3. strongSwan connects: IKEv2, EAP-MSCHAPv2, the box's certificate")
        charon = Charon(topo.client, os.path.join(work, "client"), ca_pem=box.ca_pem())
        charon.start()
        charon.load(Conn(remote_addr=topo.box_ip, remote_id=topo.box_ip, local_id="alice",
                         password=password, remote_ts=f"{topo.lan_ip}/32"))
        result = charon.initiate()
        print(textwrap.indent(result.stdout.strip()[-3000:], "  client| "))

        banner("4. What the client sees (swanctl --list-sas)")
        print(textwrap.indent(charon.list_sas().strip(), "  "))
        state = charon.ike_state()
        vips = charon.virtual_ips()

        banner("5. What the operator sees: ikebox show ike-sa --detail")
        print(box.cli("show", "ike-sa", "--detail").stdout)
        banner("   ikebox show sessions")
        print(box.cli("show", "sessions").stdout)
        banner("   ikebox show ipsec-sa")
        print(box.cli("show", "ipsec-sa").stdout)
        banner("   ikebox debug (the exchange trace, level 1)")
        trace = box.call("trace", limit=60)
        for record in trace:
            if record["level"] <= 1:
                print(f"  {record.get('exchange') or '':15} {record['step']:14} "
                      f"{record['text']}")

        banner("6. Result")
        ok = state == "ESTABLISHED" and bool(vips)
        print(f"IKE SA on the client: {state}; address from the box's pool: "
              f"{', '.join(vips) or 'none'}")
        if not host_has_esp():
            print("This machine's kernel has no ESP (CONFIG_INET_ESP), so the CHILD_SA "
                  "cannot be installed here: the box says so above and keeps the IKE SA. "
                  "`make test-vm` runs the data path (ping through the tunnel) in a qemu "
                  "guest with Debian's stock kernel.")
        return 0 if ok else 1
    finally:
        banner("7. Cleaning up")
        if charon:
            charon.stop()
        if box:
            box.stop()
        topo.close()
        shutil.rmtree(work, ignore_errors=True)
        print("namespaces and processes removed")


if __name__ == "__main__":
    sys.exit(main())
