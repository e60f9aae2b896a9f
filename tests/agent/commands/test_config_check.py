"""``apiward config check``: validate config and policy, print the effective settings."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agent.cli import main

ROOT = Path(__file__).resolve().parents[3]
POLICY = ROOT / "examples" / "policy" / "apiward-policy.yaml"


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["config", "check", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_prints_effective_settings_file_env_then_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "apiward.yaml"
    cfg.write_text("grpc_port: 14317\nhttp_port: 14318\nflush_interval: 2\napi_token: s3cret\n"
                   "export:\n  interval: 1\ninternal_domains: [.corp]\n")
    monkeypatch.setenv("APIWARD_HTTP_PORT", "24318")
    code, out, err = check(capsys, "--config", str(cfg), "--flush-interval", "0.5")
    assert code == 0, err
    eff = orjson.loads(out)
    assert eff["grpc_port"] == 14317  # file
    assert eff["http_port"] == 24318  # environment over file
    assert eff["flush_interval"] == 0.5  # flag over both
    assert eff["api_token"] == "***"  # never printed
    assert eff["internal_domains"] == [".corp"]
    assert eff["sections"]["export"] == {"interval": 1}


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("grpc_port: 99999\n", "grpc_port"),
        ("flush_interval: -1\n", "flush_interval"),
        ("export_protocol: carrier-pigeon\n", "export_protocol"),
        ("colour: blue\n", "unknown field 'colour'"),
        ("grpc_port: [1\n", "line"),
        ("internal_cidrs: [10.0.0.0/33]\n", "internal_cidrs"),
    ],
)
def test_bad_config_is_one_sentence_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           text: str, expect: str) -> None:
    cfg = tmp_path / "apiward.yaml"
    cfg.write_text(text)
    code, out, err = check(capsys, "--config", str(cfg))
    assert code == 2 and out == ""
    assert expect in err and str(cfg) in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = check(capsys, "--config", str(tmp_path / "nope.yaml"))
    assert code == 2 and "not found" in err


@pytest.mark.skipif(not POLICY.is_file(), reason="examples/policy/apiward-policy.yaml not present")
def test_policy_is_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(capsys, "--policy", str(POLICY))
    assert code == 0, err
    assert orjson.loads(out)["policy"] == str(POLICY)
    bad = tmp_path / "policy.yaml"
    bad.write_text("this: [is not\n")
    code, out, err = check(capsys, "--policy", str(bad))
    assert code == 2 and str(bad) in err and "Traceback" not in err
