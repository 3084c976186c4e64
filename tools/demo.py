"""`make demo`: a real IKEv2 client connects to the box, end to end.

Two network namespaces joined by a veth pair: Debian's strongSwan as the client, and
`ikebox daemon` on its embedded default configuration as the box. The client
authenticates with EAP-MSCHAPv2 against the box's own certificate, gets an address
from the box's pool and negotiates its CHILD_SA. The demo shows what an operator would
look at and removes everything it made.

Where the kernel has ESP, the CHILD_SA goes into XFRM and the client pings the box's
LAN through the tunnel. Where it has none (CONFIG_INET_ESP unset, as on these CI
machines), the demo says so, and then runs the same story once more inside a qemu
guest booting Debian's stock kernel, where the ping crosses the tunnel.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap

from tests.harness.ikebox import Box
from tests.harness.netns import Netns, Topology
from tests.harness.strongswan import Charon, Conn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def kernel_has_esp() -> bool:
    """Asks the kernel itself: add an ESP state in a scratch namespace."""
    ns = Netns(f"ikbx-demo-{os.getpid()}-esp")
    try:
        out = ns.run("ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2",
                     "proto", "esp", "spi", "0x100", "mode", "tunnel", "aead",
                     "rfc4106(gcm(aes))", "0x" + "00" * 20, "128", check=False)
        return out.returncode == 0
    finally:
        ns.delete()


def story(data_path: bool) -> bool:
    work = tempfile.mkdtemp(prefix="ikebox-demo-")
    topo = Topology("demo")
    box = charon = None
    try:
        banner("1. Two network namespaces joined by a veth pair")
        print(f"client {topo.client_ip}  <-->  box {topo.box_ip}  (box LAN {topo.lan_ip})")

        banner("2. Starting `ikebox daemon` on its embedded default")
        box = Box(topo.box, os.path.join(work, "box"), identity=topo.box_ip)
        box.start(wait=300)
        status = box.call("status")
        print(f"listening on {', '.join(status['listen'])}; identity {status['identity']}; "
              f"a CA and server certificate were made on first start")
        password = secrets.token_urlsafe(12)
        box.cli("user", "add", "alice", "--password-stdin", input=password + "\n")
        print("added VPN user alice (password generated; it is not printed)")

        banner("3. strongSwan connects: IKEv2, EAP-MSCHAPv2, the box's certificate")
        charon = Charon(topo.client, os.path.join(work, "client"), ca_pem=box.ca_pem())
        charon.start()
        charon.load(Conn(remote_addr=topo.box_ip, remote_id=topo.box_ip, local_id="alice",
                         password=password, remote_ts=f"{topo.lan_ip}/32"))
        result = charon.initiate(timeout=180)
        print(textwrap.indent(result.stdout.strip()[-3000:], "  client| "))

        banner("4. What the client sees (swanctl --list-sas)")
        print(textwrap.indent(charon.list_sas().strip(), "  "))
        state = charon.ike_state()
        vips = charon.virtual_ips()

        pinged = None
        if not data_path:
            banner("5. Through the tunnel: skipped, this kernel cannot carry ESP (below)")
        elif vips:
            banner(f"5. Through the tunnel: the client pings the box's LAN ({topo.lan_ip})")
            out = topo.client.run("ping", "-c", "3", "-i", "0.3", "-W", "5", "-I", vips[0],
                                  topo.lan_ip, check=False, timeout=60)
            print(textwrap.indent(out.stdout.strip(), "  "))
            pinged = out.returncode == 0
            print("  the box's kernel counters (ip -s xfrm state, keys left out):")
            xfrm = topo.box.run("ip", "-s", "xfrm", "state").stdout
            for line in xfrm.splitlines():
                if not any(word in line for word in ("enc ", "aead ", "auth")):
                    print(f"    {line}")

        banner("6. What the operator sees: ikebox show ike-sa --detail")
        print(box.cli("show", "ike-sa", "--detail").stdout)
        banner("   ikebox show sessions")
        print(box.cli("show", "sessions").stdout)
        banner("   ikebox show ipsec-sa")
        print(box.cli("show", "ipsec-sa").stdout)
        banner("   ikebox debug (the exchange trace, level 1)")
        for record in box.call("trace", limit=80):
            if record["level"] <= 1:
                print(f"  {record.get('exchange') or '':15} {record['step']:14} "
                      f"{record['text']}")

        banner("7. Result")
        ok = state == "ESTABLISHED" and bool(vips)
        print(f"IKE SA on the client: {state}; address from the box's pool: "
              f"{', '.join(vips) or 'none'}")
        if pinged is not None:
            print(f"ping through the tunnel: {'passed' if pinged else 'FAILED'}")
            ok = ok and pinged
        return ok
    finally:
        banner("8. Cleaning up")
        if charon:
            charon.stop()
        if box:
            box.stop()
        topo.close()
        shutil.rmtree(work, ignore_errors=True)
        print("namespaces and processes removed")


def main(argv: list[str]) -> int:
    if os.geteuid() != 0:
        print("make demo needs root (it creates network namespaces)", file=sys.stderr)
        return 2
    if "--guest" in argv:
        return 0 if story(data_path=True) else 1

    esp = kernel_has_esp()
    ok = story(data_path=esp)
    if esp:
        return 0 if ok else 1

    banner("This machine's kernel has no ESP")
    print("Its kernel refuses ESP states (no ESP support, or none for AES-GCM; the box "
          "named what was missing above), so no CHILD_SA can be installed here: the box "
          "said so, answered the client NO_PROPOSAL_CHOSEN for the "
          "child and kept the IKE SA.\nNext, the same story inside a qemu guest booting "
          "Debian's stock kernel (which has ESP), where the ping crosses the tunnel. The "
          "first run builds the guest (about a minute); Python in an emulated guest is "
          "slow, so give it a few minutes.", flush=True)
    guest = subprocess.call([os.path.join(ROOT, "tests/vm/run-guest.sh"), "python3", "-m",
                             "tools.demo", "--guest"], cwd=ROOT)
    print(f"\nin the guest: {'passed' if guest == 0 else 'FAILED'}")
    return 0 if ok and guest == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
