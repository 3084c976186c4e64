"""Debian's strongSwan (charon + swanctl) as a real IKEv2 client in a namespace.

Each charon gets its own directory: strongswan.conf, swanctl/, a private /run bound
over the real one inside `ip netns exec` (which has its own mount namespace), its own
vici socket and log file. See shared/reference/test-environment.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field

from .netns import Netns, stop_process

PLUGINS = ("random nonce x509 revocation constraints pubkey pkcs1 pkcs8 pem openssl "
           "kdf hmac sha1 sha2 gmp aes gcm kernel-netlink socket-default vici "
           "eap-identity eap-md5 eap-mschapv2 updown")


@dataclass
class Conn:
    """One swanctl connection, as the client in a test wants it."""

    name: str = "box"
    remote_addr: str = ""
    remote_id: str = "ikebox.test"
    local_auth: str = "eap-mschapv2"        # or "eap-md5", "psk"
    local_id: str = "alice"
    eap_id: str | None = None               # None: same as local_id
    password: str = ""
    psk: str = ""
    remote_auth: str = "pubkey"             # or "psk"
    proposals: str = "aes256gcm16-prfsha256-x25519"
    esp_proposals: str = "aes256gcm16"
    vips: str = "0.0.0.0"
    remote_ts: str = "0.0.0.0/0"
    encap: bool = False
    fragmentation: str = "yes"
    mobike: bool = True
    dpd_delay: str = "0s"
    ike_rekey_time: str = "0"
    extra_children: dict[str, str] = field(default_factory=dict)

    def swanctl(self) -> str:
        eap_id = self.eap_id or self.local_id
        local_extra = f"eap_id = {eap_id}" if self.local_auth.startswith("eap") else ""
        secrets = ""
        if self.local_auth.startswith("eap"):
            secrets += f'eap-user {{ id = {eap_id}\n secret = "{self.password}" }}\n'
        if self.psk:
            secrets += (f'ike-psk {{ id-1 = {self.local_id}\n id-2 = {self.remote_id}\n'
                        f' secret = "{self.psk}" }}\n')
        return f"""
connections {{
  {self.name} {{
    version = 2
    remote_addrs = {self.remote_addr}
    vips = {self.vips}
    proposals = {self.proposals}
    encap = {'yes' if self.encap else 'no'}
    fragmentation = {self.fragmentation}
    mobike = {'yes' if self.mobike else 'no'}
    dpd_delay = {self.dpd_delay}
    rekey_time = {self.ike_rekey_time}
    rand_time = 0
    over_time = 600s
    keyingtries = 1
    local {{
      auth = {self.local_auth}
      id = {self.local_id}
      {local_extra}
    }}
    remote {{
      auth = {self.remote_auth}
      id = {self.remote_id}
    }}
    children {{
      {self.name} {{
        remote_ts = {self.remote_ts}
        esp_proposals = {self.esp_proposals}
        rekey_time = 0
        start_action = none
      }}
    }}
  }}
}}
secrets {{
{secrets}
}}
"""


class Charon:
    def __init__(self, ns: Netns, workdir: str, ca_pem: str | None = None, *,
                 ports: tuple[int, int] = (500, 4500), userspace_esp: bool = False) -> None:
        """ports: charon's own IKE and NAT-T ports (others when something else in the
        namespace holds 500/4500). userspace_esp: ESP in charon (kernel-libipsec, over
        a TUN device) for hosts whose kernel has none; it installs routes so that
        traffic to the remote selectors enters the tunnel."""
        self.ns = ns
        self.dir = workdir
        self.run_dir = os.path.join(workdir, "run")
        self.log_path = os.path.join(workdir, "charon.log")
        self.vici = os.path.join(self.run_dir, "charon.vici")
        for sub in ("run", "swanctl/x509ca", "swanctl/conf.d"):
            os.makedirs(os.path.join(workdir, sub), exist_ok=True)
        if ca_pem:
            with open(os.path.join(workdir, "swanctl/x509ca/box-ca.pem"), "w") as fh:
                fh.write(ca_pem)
        self.conf = os.path.join(workdir, "strongswan.conf")
        with open(self.conf, "w") as fh:
            fh.write(f"""
charon {{
  load_modular = no
  load = {"kernel-libipsec " if userspace_esp else ""}{PLUGINS}
  install_routes = {"yes" if userspace_esp else "no"}
  port = {ports[0]}
  port_nat_t = {ports[1]}
  retransmit_tries = 3
  retransmit_timeout = 2
  filelog {{
    log {{
      path = {self.log_path}
      default = 1
      ike = 2
      cfg = 2
      enc = 1
      time_format = %H:%M:%S
      flush_line = yes
    }}
  }}
  plugins {{
    vici {{ socket = unix://{self.vici} }}
  }}
}}
swanctl {{ load = pem pkcs1 pkcs8 x509 revocation constraints pubkey openssl random }}
""")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, STRONGSWAN_CONF=self.conf)
        script = f"mount --bind {self.run_dir} /run && exec /usr/lib/ipsec/charon"
        self.proc = self.ns.popen(["sh", "-c", script], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.time() + 15
        while not os.path.exists(self.vici):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"charon did not start; log:\n{self.log()}")
            time.sleep(0.1)

    def swanctl(self, *args: str, check: bool = False,
                timeout: float = 60) -> subprocess.CompletedProcess:
        env = dict(os.environ, STRONGSWAN_CONF=self.conf)
        cmd = ["swanctl", *args, "--uri", f"unix://{self.vici}"]
        return self.ns.run(*cmd, check=check, timeout=timeout, env=env)

    def load(self, conn: Conn) -> None:
        path = os.path.join(self.dir, "swanctl", "swanctl.conf")
        with open(path, "w") as fh:
            fh.write(conn.swanctl())
        os.chmod(path, 0o600)
        out = self.swanctl("--load-all", "--file", path, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"swanctl --load-all failed: {out.stdout}{out.stderr}")

    def initiate(self, conn: str = "box", child: str | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess:
        # --initiate exits 1 when only the CHILD_SA failed; callers check list_sas().
        return self.swanctl("--initiate", "--child", child or conn, "--timeout",
                            str(int(timeout)), timeout=timeout + 10)

    def terminate(self, conn: str = "box") -> subprocess.CompletedProcess:
        return self.swanctl("--terminate", "--ike", conn, "--timeout", "20", timeout=30)

    def list_sas(self) -> str:
        return self.swanctl("--list-sas").stdout

    def ike_state(self, conn: str = "box") -> str | None:
        m = re.search(rf"^{conn}: #\d+, (\w+),", self.list_sas(), re.M)
        return m.group(1) if m else None

    def virtual_ips(self) -> list[str]:
        """The virtual IPs the client installed for its IKE SA (`local ... [vip]`)."""
        text = self.list_sas()
        m = re.search(r"^\s+local\s+'[^']*' @ \S+ \[([^\]]+)\]", text, re.M)
        return [ip.strip() for ip in m.group(1).split()] if m else []

    def log(self) -> str:
        try:
            with open(self.log_path) as fh:
                return fh.read()
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process(self.proc, 10)
