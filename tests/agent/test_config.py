from __future__ import annotations

from pathlib import Path

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
        ("sensitive:\n  forward_actions: {CREDIT_CARD: bogus}\n",
         "field 'sensitive.forward_actions.CREDIT_CARD' is 'bogus'; it must be one of mask, hash, drop"),
        ("sensitive:\n  forward_actions: {default: bogus}\n",
         "field 'sensitive.forward_actions.default' is 'bogus'; it must be one of mask, hash, drop"),
        ("sensitive:\n  forward_actions: {CREDITCARD: hash}\n",
         "names 'CREDITCARD', which is not a sensitive data type; did you mean CREDIT_CARD?"),
        ("sensitive:\n  forward_actions: [mask]\n", "field 'sensitive.forward_actions' must map type names"),
        ("sensitive:\n  ignore_types: [IPADDRESS]\n", "names 'IPADDRESS', which is not a sensitive data type"),
        ("sensitive:\n  ignore_types: IP_ADDRESS\n", "field 'sensitive.ignore_types' is 'IP_ADDRESS'; it must be a list"),
        ("sensitive:\n  threshold: 1.5\n", "field 'sensitive.threshold' is 1.5; it must be a score from 0 to 1"),
        ("sensitive:\n  threshold: high\n", "field 'sensitive.threshold' is 'high'"),
        ("sensitive:\n  forward_queue_spans: 0\n", "field 'sensitive.forward_queue_spans' is 0; it must be a positive"),
        ("sensitive:\n  enabled: maybe\n", "field 'sensitive.enabled' is 'maybe'; it must be true or false"),
        ("sensitive:\n  forward_action: {CREDIT_CARD: hash}\n",
         "unknown field 'sensitive.forward_action'; allowed fields are:"),
        ("traces:\n  admit_per_second: 0\n", "field 'traces.admit_per_second' is 0; it must be a positive number"),
        ("traces:\n  max_traces: -1\n", "field 'traces.max_traces' is -1; it must be a number of traces"),
        ("traces:\n  max_trace: 10\n", "unknown field 'traces.max_trace'; allowed fields are: max_traces"),
        ("edge_process: sometimes\n", "field 'edge_process' is 'sometimes'; it must be one of auto, on, off"),
    ],
)
def test_bad_file_names_file_field_and_fix(tmp_path, text, needle):
    f = tmp_path / "apiward.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        cfgmod.load(f, environ={})
    assert str(f) in str(e.value)
    assert needle in str(e.value)


def test_edge_process_reads_yaml_on_off_and_env(tmp_path):
    f = tmp_path / "apiward.yaml"
    assert cfgmod.load(environ={}).edge_process == "auto"
    for text, want in (("edge_process: on\n", "on"), ("edge_process: off\n", "off"), ("edge_process: auto\n", "auto")):
        f.write_text(text)  # YAML 1.1 reads bare on/off as booleans
        assert cfgmod.load(f, environ={}).edge_process == want
    assert cfgmod.load(environ={"APIWARD_EDGE_PROCESS": "off"}).edge_process == "off"


def test_bad_env_and_spec_flag():
    with pytest.raises(ConfigError, match="APIWARD"):
        cfgmod.load(environ={"APIWARD_GRPC_PORT": "x"})
    with pytest.raises(ConfigError, match="SERVICE=PATH"):
        cfgmod.parse_spec_args(["users"])


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        cfgmod.load("/nonexistent/apiward.yaml", environ={})


def test_good_sensitive_section(tmp_path):
    f = tmp_path / "apiward.yaml"
    f.write_text("sensitive:\n  forward_actions: {credit_card: HASH, PASSWORD: drop, default: mask}\n"
                 "  ignore_types: [ip_address]\n  threshold: 0.7\n  forward_queue_spans: 1000\n"
                 "  enabled: true\n  scan_resource: false\n")
    c = cfgmod.load(f, environ={})
    assert c.section("sensitive")["threshold"] == 0.7


def test_traces_section_reaches_the_store(tmp_path):
    from enrichers.traces import TraceStoreEnricher

    f = tmp_path / "apiward.yaml"
    f.write_text("traces:\n  max_traces: 300\n  admit_per_second: 40\n")
    enr = TraceStoreEnricher(cfgmod.load(f, environ={}))
    assert (enr.max_traces, enr.admit_per_second) == (300, 40)
    assert TraceStoreEnricher(cfgmod.load(environ={})).admit_per_second == 500  # max_traces / 4


def test_forward_overrides_a_disabled_sensitive_section(tmp_path, caplog):
    f = tmp_path / "apiward.yaml"
    f.write_text("forward: grpc://127.0.0.1:4317\nsensitive:\n  enabled: false\n")
    c = cfgmod.load(f, environ={})
    assert c.section("sensitive")["enabled"] is True
    assert "sensitive.enabled: false is overridden" in caplog.text


def test_internal_hosts_add_to_the_defaults_for_every_analysis(tmp_path: Path) -> None:
    from agent.config import internal_hosts
    from enrichers.abuse.enricher import AbuseEnricher
    from enrichers.callgraph import CallGraphEnricher
    from enrichers.sensitive.enricher import SensitiveDataEnricher

    cfg_file = tmp_path / "apiward.yaml"
    cfg_file.write_text("internal_domains: [.mycorp.example]\ninternal_cidrs: [127.0.0.1/32]\n")
    cfg = cfgmod.load(cfg_file, environ={})
    domains, cidrs = internal_hosts(cfg)
    assert ".mycorp.example" in domains and ".svc.cluster.local" in domains
    assert "10.0.0.0/8" in cidrs and "127.0.0.1/32" in cidrs and "127.0.0.0/8" not in cidrs
    graph = CallGraphEnricher(cfg).classifier
    hosts = SensitiveDataEnricher(cfg).hosts
    for host, internal in [("api.mycorp.example", True), ("pg.db.svc.cluster.local", True),
                           ("192.168.1.5", True), ("127.0.0.1", True), ("127.0.0.2", False),
                           ("api.partner.example.com", False)]:
        assert graph.is_internal(host) is internal, host
        assert hosts.is_external(host) is not internal, host
    assert ".svc" in AbuseEnricher(cfg).internal_domains

    cfg_file.write_text("internal_domains: [.mycorp.example]\ninternal_defaults: false\n")
    replaced = cfgmod.load(cfg_file, environ={})
    assert internal_hosts(replaced)[0] == [".mycorp.example"]
    assert SensitiveDataEnricher(replaced).hosts.is_external("pg.db.svc.cluster.local")
