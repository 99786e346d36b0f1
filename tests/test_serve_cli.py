"""`iipa serve` argument handling (the server itself is exercised in test_serve_shutdown)."""

from __future__ import annotations

import argparse

from iipa.commands import serve as serve_command


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_help_lists_the_limits(run_cli):
    code, out, _ = run_cli("serve", "--help")
    assert code == 0
    for flag in ("--max-upload-mb", "--max-pixels", "--formats", "--timeout", "--max-concurrency",
                 "--no-batching", "--max-batch-size", "--max-wait-ms", "--api-key-env", "--graceful-timeout",
                 "--forwarded-allow-ips", "--min-body-rate", "--max-uploads-per-address", "--upload-disk-mb"):
        assert flag in out
    code, out, _ = run_cli("study", "serve", "--help")
    assert code == 0 and "--forwarded-allow-ips" in out


def test_flags_become_settings(monkeypatch):
    monkeypatch.setenv("MY_KEY", "k3y")
    s = serve_command.settings_from_args(parse("--max-upload-mb", "2", "--formats", "jpeg, png", "--no-batching",
                                               "--max-batch-size", "8", "--api-key-env", "MY_KEY"))
    assert s.max_upload_bytes == 2 * 2**20 and s.allowed_formats == ("JPEG", "PNG", "MPO")
    assert s.batching is False and s.max_batch_size == 8 and s.api_key == "k3y"
    s = serve_command.settings_from_args(parse("--min-body-rate", "500", "--max-uploads-per-address", "4",
                                               "--upload-disk-mb", "100"))
    assert s.min_body_rate == 500 and s.max_uploads_per_address == 4 and s.upload_disk_bytes == 100 * 2**20


def test_proxy_headers_are_off_unless_proxies_are_named(run_cli, tiny_checkpoint, monkeypatch):
    import iipa.httpserver

    configs = []
    monkeypatch.setattr(iipa.httpserver, "run_server", lambda config, sock: configs.append(config))
    for extra in ((), ("--forwarded-allow-ips", "10.0.0.1,10.0.0.2")):
        code, _, err = run_cli("serve", "--model", tiny_checkpoint, "--port", "0", *extra)
        assert code == 0, err
    assert configs[0].proxy_headers is False
    assert configs[1].proxy_headers is True and configs[1].forwarded_allow_ips == "10.0.0.1,10.0.0.2"


def test_bad_limits_and_missing_key_are_usage_errors(run_cli, tiny_checkpoint, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    code, _, err = run_cli("serve", "--model", tiny_checkpoint, "--api-key-env", "NO_SUCH_KEY_VAR")
    assert code == 2 and "NO_SUCH_KEY_VAR" in err
    code, _, err = run_cli("serve", "--model", tiny_checkpoint, "--max-files", "0")
    assert code == 2 and "--max-files" in err


def test_a_bad_port_and_a_port_in_use_are_one_line_errors(run_cli, tiny_checkpoint):
    import socket

    code, _, err = run_cli("serve", "--model", tiny_checkpoint, "--port", "99999")
    assert code == 2 and "0 to 65535" in err and "Traceback" not in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run_cli("serve", "--model", tiny_checkpoint, "--port", str(port))
    assert code == 2, err
    assert err.strip().splitlines() == [f"iipa serve: error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert out == ""


def test_iipa_debug_0_prints_no_traceback(run_cli, tiny_checkpoint, monkeypatch):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        for value, traceback in (("0", False), ("", False), ("off", False), ("1", True)):
            monkeypatch.setenv("IIPA_DEBUG", value)
            code, _, err = run_cli("serve", "--model", tiny_checkpoint, "--port", str(busy.getsockname()[1]))
            assert code == 2 and ("Traceback" in err) is traceback, (value, err)


def test_study_serve_reports_a_bad_or_busy_port_the_same_way(run_cli, tmp_path):
    import socket

    from study_util import make_study

    db = make_study(tmp_path)
    code, _, err = run_cli("study", "serve", "--db", db, "--port", "70000", "--admin-token", "t" * 16)
    assert code == 2 and "0 to 65535" in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run_cli("study", "serve", "--db", db, "--port", str(port), "--admin-token", "t" * 16)
    assert code == 2 and err.strip().splitlines() == [
        f"iipa study: error: cannot listen on 127.0.0.1:{port}: Address already in use"]
