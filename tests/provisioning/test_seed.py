"""The first-boot seed: validation first, then all-or-nothing application."""

import json
import logging
import os
import pwd
import stat
import sys
from pathlib import Path

import pytest

from firmware.users import UserStore, nt_password_hash
from provisioning import seed as seedmod
from provisioning.seed import SeedError, apply_file, apply_seed, parse_seed

REPO = Path(__file__).resolve().parents[2]
OVERLAY_CONFIG = REPO / "provisioning/overlay/etc/ikebox/ikebox.toml"
# A real argon2id hash (argon2-cffi, of a throwaway password) so the format check is real.
ADMIN_HASH = ("$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA"
              "$RdescudvJCsgt3ub+b+dWRWJTmaaJObG3ogzNz5Ub3M")
SECRET = "correct horse battery staple"
CLI = [sys.executable, "-m", "firmware.cli"]

GOOD = f"""
[box]
identity = "vpn.branch-042.example.org"

[wan]
address = "192.0.2.10/24"
gateway = "192.0.2.1"
dns = ["192.0.2.53", "2001:db8::53"]

[webui]
admin_password_hash = "{ADMIN_HASH}"

[[users]]
name = "alice"
password = "{SECRET}"

[[users]]
name = "bob"
password_nt_hash = "{nt_password_hash('bob-pw').hex()}"
"""


@pytest.fixture
def box(tmp_path):
    """A box root with the image's shipped config and no users yet."""
    root = tmp_path / "root"
    cfg = root / seedmod.CONFIG
    cfg.parent.mkdir(parents=True)
    cfg.write_bytes(OVERLAY_CONFIG.read_bytes())
    net = root / seedmod.NETWORK
    net.parent.mkdir(parents=True)
    net.write_text("[Match]\nName=e*\n\n[Network]\nDHCP=yes\n")
    return root


def snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def apply(seed, root, **kw):
    return apply_seed(seed, root, web_user="nobody", ikebox=CLI, **kw)


def test_good_seed_parses_every_section():
    s = parse_seed(GOOD)
    assert s.identity == "vpn.branch-042.example.org"
    assert not s.wan.dhcp and str(s.wan.address) == "192.0.2.10/24"
    assert str(s.wan.gateway) == "192.0.2.1"
    assert s.wan.dns == ("192.0.2.53", "2001:db8::53")
    assert s.admin_password_hash == ADMIN_HASH
    assert [u.name for u in s.users] == ["alice", "bob"]
    assert s.users[1].nt_hash == nt_password_hash("bob-pw")
    assert SECRET not in repr(s)


def test_shipped_config_is_valid_for_the_daemon():
    from firmware import config
    cfg = config.load(str(OVERLAY_CONFIG))
    assert cfg["box"]["identity"] == "ikebox.local"


def test_apply_writes_config_network_admin_and_users(box, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    done = apply(parse_seed(GOOD), box)
    assert done == ["identity", "wan", "webui admin password", "2 users"]

    from firmware import config
    cfg = config.load(str(box / seedmod.CONFIG))
    assert cfg["box"]["identity"] == "vpn.branch-042.example.org"
    assert "# ikebox configuration" in (box / seedmod.CONFIG).read_text()  # comments kept

    net = (box / seedmod.NETWORK).read_text()
    assert "Address=192.0.2.10/24" in net and "Gateway=192.0.2.1" in net
    assert "DNS=2001:db8::53" in net and "DHCP" not in net

    admin = box / seedmod.ADMIN
    assert json.loads(admin.read_text()) == {"password_hash": ADMIN_HASH}
    st = admin.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == pwd.getpwnam("nobody").pw_uid
    assert stat.S_IMODE(admin.parent.stat().st_mode) == 0o700

    store = UserStore(box / "var/lib/ikebox/users.json")
    assert store.get("alice").nt_hash == nt_password_hash(SECRET)
    assert store.get("bob").nt_hash == nt_password_hash("bob-pw")
    assert stat.S_IMODE((box / "var/lib/ikebox/users.json").stat().st_mode) == 0o600
    assert not (box / "var/lib/ikebox/.seed-config.toml").exists()

    out = capfd.readouterr()
    assert SECRET not in caplog.text + out.out + out.err


def test_dhcp_seed_writes_dhcp_network(box):
    apply(parse_seed('[wan]\ndhcp = true\ndns = ["192.0.2.53"]\n'), box)
    net = (box / seedmod.NETWORK).read_text()
    assert "DHCP=yes" in net and "DNS=192.0.2.53" in net and "UseDNS=no" in net


def test_identity_is_added_when_config_has_no_box_section(box):
    (box / seedmod.CONFIG).write_text("[pool]\nipv4 = \"10.99.0.0/24\"\n")
    apply(parse_seed('[box]\nidentity = "198.51.100.7"\n'), box)
    from firmware import config
    cfg = config.load(str(box / seedmod.CONFIG))
    assert cfg["box"]["identity"] == "198.51.100.7"
    assert cfg["pool"]["ipv4"] == "10.99.0.0/24"


@pytest.mark.parametrize("text, field", [
    ("[box\nidentity = 1", "not valid TOML"),
    ("[boxx]\nidentity = \"a\"", "unknown sections: boxx"),
    ("[box]\nidentty = \"a\"", "[box] has unknown keys: identty"),
    ("[box]\nidentity = \"-bad-.example\"", "[box] identity"),
    ("[wan]\ndhcp = \"yes\"", "[wan] dhcp"),
    ("[wan]\naddress = \"192.0.2.10\"", "prefix length"),
    ("[wan]\naddress = \"192.0.2.10/24\"\ngateway = \"198.51.100.1\"", "[wan] gateway"),
    ("[wan]\ndhcp = true\naddress = \"192.0.2.10/24\"", "excludes address"),
    ("[wan]\naddress = \"192.0.2.10/24\"", "needs a gateway"),
    ("[wan]\naddress = \"192.0.2.10/24\"\ngateway = \"192.0.2.10\"", "own address"),
    ("[wan]\naddress = \"192.0.2.0/24\"\ngateway = \"192.0.2.1\"", "network's own"),
    ("[wan]\ndns = [\"resolver.example\"]\ndhcp = true", "[wan] dns"),
    (f"[webui]\nadmin_password_hash = \"{SECRET}\"", "argon2id"),
    ("[webui]\nadmin_password_hash = "
     "\"$argon2i$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"",
     "argon2id"),
    (f"[[users]]\nname = \"a b\"\npassword = \"{SECRET}\"", "spaces"),
    (f"[[users]]\nname = \"a\"\npassword = \"{SECRET}\"\npassword_nt_hash = \"00\"",
     "exactly one"),
    ("[[users]]\nname = \"a\"\npassword_nt_hash = \"xyz\"", "32 hex digits"),
    (f"[[users]]\nname = \"a\"\npassword = \"{SECRET}\"\n[[users]]\nname = \"a\"\n"
     f"password = \"{SECRET}\"", "appears twice"),
    ("[[users]]\nname = \"a\"\npassword = \"\"", "must not be empty"),
    ("", "sets nothing"),
])
def test_bad_seed_is_refused_with_the_field_and_without_the_secret(text, field):
    with pytest.raises(SeedError) as exc:
        parse_seed(text)
    assert field in str(exc.value)
    assert SECRET not in str(exc.value)


def test_bad_file_is_renamed_invalid_and_nothing_applied(box, caplog):
    before = snapshot(box)
    boot = box / "boot/firmware"
    boot.mkdir(parents=True)
    seed_file = boot / "ikebox-seed.toml"
    seed_file.write_text(GOOD.replace('"192.0.2.1"', '"203.0.113.1"'))
    assert apply_file(seed_file, box, web_user="nobody", ikebox=CLI) == 1
    assert not seed_file.exists()
    assert (boot / "ikebox-seed.toml.invalid").exists()
    assert "gateway is not inside" in caplog.text
    assert SECRET not in caplog.text
    after = snapshot(box)
    after.pop("boot/firmware/ikebox-seed.toml.invalid")
    assert after == before


def test_good_file_is_applied_and_deleted(box):
    boot = box / "boot/firmware"
    boot.mkdir(parents=True)
    seed_file = boot / "ikebox-seed.toml"
    seed_file.write_text(GOOD)
    assert apply_file(seed_file, box, web_user="nobody", ikebox=CLI) == 0
    assert list(boot.iterdir()) == []
    assert (box / seedmod.ADMIN).exists()


def test_failure_while_applying_rolls_everything_back(box):
    before = snapshot(box)

    def fail_at_users(step):
        if step == "users":
            raise OSError("disk full (simulated after the users step)")

    with pytest.raises(OSError):
        apply(parse_seed(GOOD), box, after_each=fail_at_users)
    after = snapshot(box)
    assert after == before, "a failed seed left changes behind"


def test_existing_user_refuses_the_seed_and_rolls_back(box):
    store_path = box / "var/lib/ikebox/users.json"
    store_path.parent.mkdir(parents=True, mode=0o700)
    UserStore(store_path).add("alice", "old password")
    before = snapshot(box)
    with pytest.raises(SeedError, match="alice already exist"):
        apply(parse_seed(GOOD), box)
    assert snapshot(box) == before
    assert UserStore(store_path).get("alice").nt_hash == nt_password_hash("old password")


def test_cli_failure_rolls_back(box):
    before = snapshot(box)
    with pytest.raises(SeedError, match="ikebox user add"):
        apply_seed(parse_seed(GOOD), box, web_user="nobody",
                   ikebox=[sys.executable, "-c", "import sys; sys.exit(4)"])
    assert snapshot(box) == before
    assert not os.path.exists(box / seedmod.ADMIN)


def test_hash_helpers_print_what_the_seed_and_the_box_accept(capsys):
    from argon2 import PasswordHasher

    answers = iter(["correct horse battery", "correct horse battery"])
    assert seedmod._print_hash("admin-hash", lambda _prompt: next(answers)) == 0
    printed = capsys.readouterr().out.strip()
    assert PasswordHasher().verify(printed, "correct horse battery")
    parse_seed(f'[webui]\nadmin_password_hash = "{printed}"\n')

    answers = iter(["password", "password"])
    assert seedmod._print_hash("nt-hash", lambda _prompt: next(answers)) == 0
    assert capsys.readouterr().out.strip() == "8846f7eaee8fb117ad06bdd830b7586c"

    answers = iter(["one", "two"])
    assert seedmod._print_hash("nt-hash", lambda _prompt: next(answers)) == 1
    assert "differ" in capsys.readouterr().err
