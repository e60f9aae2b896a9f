from __future__ import annotations

import pytest

from agent import config as cfgmod
from agent.config import ConfigError


def test_defaults():
    c = cfgmod.load(environ={})
    assert (c.grpc_port, c.http_port, c.api_bind) == (4317, 4318, "127.0.0.1")


def test_file_env_flags_precedence(tmp_path):
    f = tmp_path / "apiward.yaml"
    f.write_text("grpc_port: 5000\nhttp_port: 5001\nspecs:\n  users: specs/users.yaml\nabuse:\n  warmup: 10\n")
    c = cfgmod.load(f, environ={"APIWARD_HTTP_PORT": "6001"}, overrides={"api_port": 0})
    assert (c.grpc_port, c.http_port, c.api_port) == (5000, 6001, 0)
    assert c.specs["users"] == str(tmp_path / "specs/users.yaml")
    assert c.section("abuse") == {"warmup": 10}


@pytest.mark.parametrize(
    "text,needle",
    [
        ("grpc_port: 70000\n", "field 'grpc_port' is 70000; it must be a port number"),
        ("grpc_port: [1]\n", "field 'grpc_port'"),
        ("bogus: 1\n", "unknown field 'bogus'; allowed fields are:"),
        ("persist: maybe\n", "field 'persist' is 'maybe'; it must be true or false"),
        ("internal_cidrs: [10.0.0.0/33]\n", "field 'internal_cidrs'"),
        ("grpc_port: 1\n  bad: [\n", "not valid YAML"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("specs: [a]\n", "field 'specs' must map service names"),
    ],
)
def test_bad_file_names_file_field_and_fix(tmp_path, text, needle):
    f = tmp_path / "apiward.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        cfgmod.load(f, environ={})
    assert str(f) in str(e.value)
    assert needle in str(e.value)


def test_bad_env_and_spec_flag():
    with pytest.raises(ConfigError, match="APIWARD"):
        cfgmod.load(environ={"APIWARD_GRPC_PORT": "x"})
    with pytest.raises(ConfigError, match="SERVICE=PATH"):
        cfgmod.parse_spec_args(["users"])


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        cfgmod.load("/nonexistent/apiward.yaml", environ={})
