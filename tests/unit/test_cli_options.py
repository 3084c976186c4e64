"""`ikebox`'s own options (--config, --socket) work before and after the subcommand."""

from __future__ import annotations

import pytest

from firmware.cli import _global_options_first, main


@pytest.mark.parametrize("argv", [
    ["--config", "/nonexistent/ikebox.toml", "daemon"],
    ["daemon", "--config", "/nonexistent/ikebox.toml"],
    ["daemon", "--config=/nonexistent/ikebox.toml"],
])
def test_daemon_config_in_either_place(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no config file /nonexistent/ikebox.toml" in err
    assert "unrecognized arguments" not in err


def test_socket_after_the_subcommand(tmp_path, capsys):
    assert main(["show", "status", "--socket", str(tmp_path / "none.sock")]) == 3
    assert "Is `ikebox daemon` running?" in capsys.readouterr().err


def test_hoisting_keeps_order_and_stops_at_double_dash():
    assert _global_options_first(["user", "add", "bob", "--config", "c.toml"]) == \
        ["--config", "c.toml", "user", "add", "bob"]
    assert _global_options_first(["x", "--", "--config", "y"]) == ["x", "--", "--config", "y"]


def test_listing_users_without_a_daemon_creates_nothing(tmp_path, capsys):
    conf = tmp_path / "c.toml"
    conf.write_text(f'[box]\nstate_dir = "{tmp_path}/state"\n'
                    f'[control]\nsocket = "{tmp_path}/none.sock"\n')
    assert main(["--config", str(conf), "user", "list"]) == 0
    assert "no users" in capsys.readouterr().out
    assert not (tmp_path / "state").exists()
