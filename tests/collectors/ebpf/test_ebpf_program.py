"""Rendering the BPF text, attribution parsing and the span join: no root needed."""

from __future__ import annotations

import re

import pytest

from collectors.ebpf.events import HEADER_SIZE, EventHeader, decode
from collectors.ebpf.procinfo import parse_cgroup, parse_proc_net_tcp, workload_name
from collectors.ebpf.program import ProgramOptions, render_program
from collectors.ebpf.spans import parse_traceparent


def test_render_fills_every_placeholder() -> None:
    text = render_program(ProgramOptions(self_pid=42))
    assert "{{" not in text and "}}" not in text
    assert "#define CAPTURE_BYTES 4096" in text
    assert "#define SELF_PID 42" in text
    assert "probe_ssl_rw_enter" in text


def test_render_compiles_numeric_filters_into_the_program() -> None:
    text = render_program(ProgramOptions(pids=(7, 3), ports=(8080,), self_pid=1))
    assert "return pid == 3 || pid == 7;" in text
    assert "return lport == 8080 || rport == 8080;" in text


def test_render_without_filters_allows_everything() -> None:
    text = render_program(ProgramOptions(self_pid=1, tls=False))
    body = text.split("static __always_inline int port_allowed", 1)[1].split("}", 1)[0]
    assert "return 1;" in body
    assert "probe_ssl_rw_enter" not in text


def test_render_comm_filter_compares_bytes() -> None:
    text = render_program(ProgramOptions(self_pid=1, comms=("curl",)))
    assert "comm[0] == 99 && comm[1] == 117 && comm[2] == 114 && comm[3] == 108 && comm[4] == 0" in text


def test_render_capture_size() -> None:
    assert "#define CAPTURE_BYTES 256" in render_program(ProgramOptions(capture_bytes=256, self_pid=1))


@pytest.mark.parametrize(
    "options, word",
    [
        (ProgramOptions(capture_bytes=0), "ebpf_capture_bytes"),
        (ProgramOptions(capture_bytes=10**6), "ebpf_capture_bytes"),
        (ProgramOptions(ports=(70000,)), "port"),
        (ProgramOptions(pids=(-1,)), "process id"),
        (ProgramOptions(ringbuf_pages=1000), "power of two"),
    ],
)
def test_render_rejects_bad_options(options: ProgramOptions, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        render_program(options)


def test_event_header_mirrors_the_c_struct() -> None:
    # The C header (everything before data[]) is 104 bytes; fields in C order.
    text = render_program(ProgramOptions(self_pid=1))
    struct = re.search(r"struct event_t \{(.*?)\};", text, re.S)
    assert struct is not None
    c_fields = [ln.split()[-1].rstrip(";").split("[")[0] for ln in struct.group(1).strip().splitlines()]
    assert c_fields[:-1] == [f[0] for f in EventHeader._fields_]
    assert HEADER_SIZE == 104


def test_decode_round_trip() -> None:
    h = EventHeader(ts=5, conn_id=9, pid=10, tid=11, fd=3, len=10, cap=4, kind=1, dir=1, source=1, role=2, family=2, lport=1234, rport=80)
    h.laddr[:4] = [127, 0, 0, 1]
    h.raddr[:4] = [10, 0, 0, 2]
    h.comm = b"curl"
    ev = decode(bytes(h) + b"GET /")
    assert (ev.pid, ev.fd, ev.data, ev.length, ev.truncated) == (10, 3, b"GET ", 10, True)
    assert (ev.local_addr, ev.remote_addr, ev.remote_port, ev.comm) == ("127.0.0.1", "10.0.0.2", 80, "curl")


@pytest.mark.parametrize(
    "text, container, pod",
    [
        ("0::/system.slice/docker-" + "a" * 64 + ".scope\n", "a" * 64, ""),
        ("12:pids:/docker/" + "b" * 64 + "\n", "b" * 64, ""),
        (
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e3d4c_aaaa_bbbb_cccc_0123456789ab.slice/cri-containerd-"
            + "c" * 64
            + ".scope\n",
            "c" * 64,
            "1f2e3d4c-aaaa-bbbb-cccc-0123456789ab",
        ),
        (
            "11:memory:/kubepods/besteffort/pod1f2e3d4c-aaaa-bbbb-cccc-0123456789ab/" + "d" * 64 + "\n",
            "d" * 64,
            "1f2e3d4c-aaaa-bbbb-cccc-0123456789ab",
        ),
        ("0::/kubepods.slice/kubepods-pod11111111_2222_3333_4444_555555555555.slice/crio-" + "e" * 64 + ".scope", "e" * 64, "11111111-2222-3333-4444-555555555555"),
        ("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + "f" * 64 + ".scope", "f" * 64, ""),
        ("0::/user.slice/user-1000.slice/session-2.scope\n", "", ""),
    ],
    ids=["docker-v2", "docker-v1", "containerd-systemd", "containerd-cgroupfs", "crio", "podman", "host"],
)
def test_parse_cgroup(text: str, container: str, pod: str) -> None:
    assert parse_cgroup(text) == (container, pod)


def test_workload_name() -> None:
    assert workload_name("checkout-7d9f8b6c4-x2x9z") == "checkout"
    assert workload_name("db-0") == "db"
    assert workload_name("plainhost") == "plainhost"


def test_parse_proc_net_tcp() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0\n"
    )
    assert parse_proc_net_tcp(text) == {4242: ("127.0.0.1", 8080, "127.0.0.1", 54321)}


def test_parse_traceparent() -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert parse_traceparent(tp) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert parse_traceparent("00-" + "0" * 32 + "-b7ad6b7169203331-01") is None
    assert parse_traceparent("garbage") is None


def test_import_does_not_pull_in_bcc() -> None:
    import subprocess
    import sys

    code = "import sys, collectors.ebpf; assert 'bcc' not in sys.modules, 'bcc imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[3]))
