"""The user store: validation, file mode, atomic writes, no secrets shown, reload."""

import json
import os
import stat

import pytest

from firmware import users as users_mod
from firmware.eap import mschap
from firmware.users import UserError, UserStore


@pytest.fixture
def path(tmp_path):
    return tmp_path / "users.json"


def test_missing_file_is_an_empty_store(path):
    store = UserStore(path)
    assert store.list() == []
    assert not path.exists()


def test_add_stores_nt_hash_in_a_0600_file(path):
    store = UserStore(path)
    store.add("alice", "clientPass")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    user = store.get("alice")
    assert user.nt_hash == mschap.nt_password_hash("clientPass")
    assert user.enabled and user.md5_password is None
    assert "clientPass" not in path.read_text()


def test_mode_is_0600_whatever_the_umask(path):
    old = os.umask(0)
    try:
        UserStore(path).add("alice", "pw")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_md5_users_keep_the_cleartext_only_when_asked(path):
    store = UserStore(path)
    store.add("bob", "md5secret", allow_md5=True)
    store.add("carol", "other")
    assert store.get("bob").md5_password == "md5secret"
    assert store.get("carol").md5_password is None
    assert {u["name"]: u["methods"] for u in store.list()} == {
        "bob": ["mschapv2", "md5"],
        "carol": ["mschapv2"],
    }


def test_list_and_repr_show_no_secrets(path):
    store = UserStore(path)
    store.add("bob", "md5secret", allow_md5=True)
    listing = json.dumps(store.list())
    user = store.get("bob")
    for text in (listing, repr(user), str(user)):
        assert "md5secret" not in text
        assert user.nt_hash.hex() not in text
        assert repr(user.nt_hash) not in text
    assert store.list() == [{"name": "bob", "enabled": True, "methods": ["mschapv2", "md5"]}]


def test_add_existing_is_an_error_and_changes_nothing(path):
    store = UserStore(path)
    store.add("alice", "one")
    before = path.read_bytes()
    with pytest.raises(UserError, match="already exists"):
        store.add("alice", "two")
    assert path.read_bytes() == before
    assert store.get("alice").nt_hash == mschap.nt_password_hash("one")


@pytest.mark.parametrize(
    "name", ["", "a" * 65, "has space", "tab\there", "ctl\x01", "CORP\\alice", "new\nline", 5]
)
def test_bad_names_are_refused(path, name):
    with pytest.raises(UserError):
        UserStore(path).add(name, "pw")
    assert not path.exists()


def test_good_names(path):
    store = UserStore(path)
    for name in ("a", "a" * 64, "alice@example.org", "jürgen", "first.last-2"):
        store.add(name, "pw")
    assert len(store.list()) == 5


@pytest.mark.parametrize("password", ["", "x" * 257, None, "\ud800"])
def test_bad_passwords_are_refused_without_echoing_them(path, password):
    with pytest.raises(UserError) as info:
        UserStore(path).add("alice", password)
    if isinstance(password, str) and password:
        assert password not in str(info.value)
    assert not path.exists()


def test_set_password_and_enabled(path):
    store = UserStore(path)
    store.add("bob", "old", allow_md5=True)
    store.set("bob", password="new")
    assert store.get("bob").nt_hash == mschap.nt_password_hash("new")
    assert store.get("bob").md5_password == "new"  # keeps MD5 permission
    store.set("bob", enabled=False)
    assert store.get("bob").enabled is False
    assert UserStore(path).get("bob").enabled is False
    with pytest.raises(UserError, match="no such user"):
        store.set("nobody", enabled=True)


def test_delete(path):
    store = UserStore(path)
    store.add("alice", "pw")
    store.delete("alice")
    assert store.get("alice") is None
    assert UserStore(path).list() == []
    with pytest.raises(UserError, match="no such user"):
        store.delete("alice")


def test_corrupt_file_is_a_clear_error_and_is_not_overwritten(path):
    path.write_text('{"version": 1, "users": {"alice": ')
    with pytest.raises(UserError, match="corrupt"):
        UserStore(path)
    assert path.read_text() == '{"version": 1, "users": {"alice": '


def test_corrupt_after_load_blocks_writes_and_keeps_last_good_users(path):
    store = UserStore(path)
    store.add("alice", "pw")
    path.write_text("not json at all, and a longer file than before")
    with pytest.raises(UserError, match="corrupt"):
        store.reload_if_changed()
    assert store.get("alice") is not None
    with pytest.raises(UserError, match="corrupt"):
        store.add("bob", "pw")
    assert path.read_text().startswith("not json")


@pytest.mark.parametrize(
    "doc",
    [
        {"version": 2, "users": {}},
        {"version": 1, "users": []},
        {"version": 1, "users": {"alice": {"enabled": "yes", "nt_hash": "00" * 16}}},
        {"version": 1, "users": {"alice": {"enabled": True, "nt_hash": "zz"}}},
        {"version": 1, "users": {"bad name": {"enabled": True, "nt_hash": "00" * 16}}},
    ],
)
def test_structurally_wrong_files_are_corrupt(path, doc):
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="corrupt"):
        UserStore(path)


def test_corrupt_error_does_not_quote_file_content(path):
    path.write_text('{"version": 1, "users": {"alice": {"md5_password": "hunter2"')
    with pytest.raises(UserError) as info:
        UserStore(path)
    assert "hunter2" not in str(info.value)


def test_reload_sees_another_process_edit(path):
    daemon = UserStore(path)
    cli = UserStore(path)
    assert daemon.reload_if_changed() is False
    cli.add("alice", "pw")
    assert daemon.get("alice") is None
    assert daemon.reload_if_changed() is True
    assert daemon.get("alice") is not None
    assert daemon.reload_if_changed() is False


def test_write_after_foreign_edit_keeps_both(path):
    daemon = UserStore(path)
    cli = UserStore(path)
    cli.add("alice", "pw")
    daemon.add("bob", "pw")  # must not drop alice
    assert {u["name"] for u in UserStore(path).list()} == {"alice", "bob"}


def test_atomic_write_failure_leaves_old_file_and_no_temp(path, monkeypatch):
    store = UserStore(path)
    store.add("alice", "pw")
    before = path.read_bytes()

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(users_mod.os, "fsync", boom)
    with pytest.raises(OSError):
        store.add("bob", "pw")
    assert path.read_bytes() == before
    assert store.get("bob") is None
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_write_goes_through_rename_of_a_synced_temp_file(path, monkeypatch):
    calls = []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src, dst):
        calls.append(("replace", os.path.dirname(src) == os.path.dirname(str(dst))))
        return real_replace(src, dst)

    def fsync(fd):
        calls.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        return real_fsync(fd)

    monkeypatch.setattr(users_mod.os, "replace", replace)
    monkeypatch.setattr(users_mod.os, "fsync", fsync)
    UserStore(path).add("alice", "pw")
    # file synced, then renamed within the same directory, then the directory synced
    assert calls == [("fsync", False), ("replace", True), ("fsync", True)]


def test_nothing_secret_is_logged(path, caplog):
    caplog.set_level("DEBUG")
    store = UserStore(path)
    store.add("bob", "md5secret", allow_md5=True)
    store.set("bob", password="newsecret", enabled=False)
    store.delete("bob")
    text = caplog.text
    assert "bob" in text
    for secret in ("md5secret", "newsecret", mschap.nt_password_hash("md5secret").hex()):
        assert secret not in text
