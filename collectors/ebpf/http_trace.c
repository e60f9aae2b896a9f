/* apiward eBPF HTTP tracer.
 *
 * Kept as text with placeholders in double braces; collectors/ebpf/program.py renders it.
 * Only syscall tracepoints, the sock:inet_sock_set_state tracepoint and
 * uprobes on OpenSSL are used (no kprobes), and no kernel struct is read, so
 * the program does not depend on the layout of the running kernel.
 *
 * Per (pid, fd) the program tracks connections it saw being accepted (server
 * side) or connected (client side) and emits their payload bytes: up to
 * CAPTURE_BYTES of each read/write plus the true length. Bytes read or written
 * inside SSL_read/SSL_write are not emitted from the syscalls (ciphertext);
 * the plaintext comes from the OpenSSL uprobes instead.
 *
 * Cheapness, since every read/write on the machine runs these probes:
 * - the pid filter runs before any map lookup; a syscall on a socket the
 *   program did not see opening costs one hash lookup;
 * - the first captured bytes of a connection are checked for an HTTP/1.x
 *   request or status line (one 32-bit compare against a short list); a
 *   connection that starts otherwise is marked and not emitted any more;
 * - records are written to the ring buffer without waking user space
 *   (BPF_RB_NO_WAKEUP): a wakeup per record would cost the traced process an
 *   irq_work and the tracer a poll round per request. User space drains the
 *   buffer on a short timer instead (16 MiB absorbs ~800 MB/s at 20 ms).
 */
#include <uapi/linux/ptrace.h>

#define CAPTURE_BYTES {{CAPTURE_BYTES}}
#define MAX_IOV {{MAX_IOV}}
#define SELF_PID {{SELF_PID}}

#define AF_INET_ 2
#define AF_INET6_ 10
#define EINPROGRESS_ 115
#define TCP_ESTABLISHED_ 1
#define TCP_SYN_SENT_ 2
#define TCP_SYN_RECV_ 3
#define IPPROTO_TCP_ 6

enum { EV_DATA = 1, EV_OPEN = 2, EV_CLOSE = 3 };
enum { DIR_INGRESS = 0, DIR_EGRESS = 1 };
enum { SRC_SYSCALL = 0, SRC_TLS = 1 };
enum { ROLE_SERVER = 1, ROLE_CLIENT = 2 };
enum { PROTO_UNKNOWN = 0, PROTO_HTTP = 1, PROTO_OTHER = 2 };
#define RB_NO_WAKEUP_ 1

struct conn_t {
    u64 conn_id;
    u16 family;
    u16 role;
    u16 lport;
    u16 rport;
    u8 laddr[16];
    u8 raddr[16];
    u16 tls;
    u16 proto;
    u32 seq;
};

struct event_t {
    u64 ts;
    u64 conn_id;
    u32 pid;
    u32 tid;
    s32 fd;
    u32 len;
    u32 cap;
    u8 kind;
    u8 dir;
    u8 source;
    u8 role;
    u16 family;
    u16 lport;
    u16 rport;
    u16 pad;
    u8 laddr[16];
    u8 raddr[16];
    char comm[16];
    u32 seq;
    u32 pad2;
    u8 data[CAPTURE_BYTES];
};

#define HDR_SIZE (__builtin_offsetof(struct event_t, data))

struct addr_key_t {
    u16 family;
    u16 port;
    u32 pad;
    u8 addr[16];
};

struct local_t {
    u16 port;
    u16 pad;
    u8 addr[16];
};

struct accept_args_t {
    u64 addr;
    s32 listen_fd;
    u32 pad;
};

struct connect_args_t {
    u64 addr;
    s32 fd;
    u32 pad;
};

struct rw_args_t {
    u64 buf;
    u64 vlen;
    s32 fd;
    u8 vec;
    u8 pad[3];
};

struct ssl_args_t {
    u64 ssl;
    u64 buf;
    u64 ex_len;
    s32 fd;
    u32 pad;
};

struct iovec_t {
    u64 base;
    u64 len;
};

struct msghdr_t {
    u64 name;
    s32 namelen;
    u32 pad;
    u64 iov;
    u64 iovlen;
};

BPF_RINGBUF_OUTPUT(events, {{RINGBUF_PAGES}});
BPF_PERCPU_ARRAY(scratch, struct event_t, 1);
BPF_PERCPU_ARRAY(lost, u64, 1);
BPF_TABLE("lru_hash", u64, struct conn_t, conns, {{MAX_CONNS}});
BPF_TABLE("lru_hash", struct addr_key_t, struct local_t, estab, 16384);
BPF_TABLE("lru_hash", u64, u64, sk_conn, 16384);
BPF_TABLE("lru_hash", u64, struct local_t, client_local, 16384);
BPF_TABLE("lru_hash", u64, s32, ssl_fd, 65536);
BPF_HASH(accept_args, u32, struct accept_args_t, 16384);
BPF_HASH(connect_args, u32, struct connect_args_t, 16384);
BPF_HASH(rw_args, u32, struct rw_args_t, 16384);
BPF_HASH(ssl_args, u32, struct ssl_args_t, 16384);

static __always_inline int pid_allowed(u32 pid) {
    if (pid == SELF_PID)
        return 0;
{{PID_FILTER}}
}

static __always_inline int port_allowed(u16 lport, u16 rport) {
{{PORT_FILTER}}
}

static __always_inline int comm_allowed(void) {
{{COMM_FILTER}}
}

static __always_inline u16 swap16(u16 v) {
    return (v >> 8) | (v << 8);
}

static __always_inline void count_lost(void) {
    int zero = 0;
    u64 *n = lost.lookup(&zero);
    if (n)
        *n += 1;
}

/* The first four bytes of an HTTP/1.x request or status line. */
static __always_inline int http_start(u32 w) {
    switch (w) {
    case 0x20544547: /* "GET " */
    case 0x54534f50: /* "POST" */
    case 0x20545550: /* "PUT " */
    case 0x454c4544: /* "DELE" */
    case 0x44414548: /* "HEAD" */
    case 0x4954504f: /* "OPTI" */
    case 0x43544150: /* "PATC" */
    case 0x50545448: /* "HTTP" */
    case 0x43415254: /* "TRAC" */
    case 0x4e4e4f43: /* "CONN" */
    case 0x504f5250: /* "PROP" */
    case 0x4f434b4d: /* "MKCO" */
    case 0x41434b4d: /* "MKCA" */
    case 0x59504f43: /* "COPY" */
    case 0x45564f4d: /* "MOVE" */
    case 0x4b434f4c: /* "LOCK" */
    case 0x4f4c4e55: /* "UNLO" */
    case 0x4e494c55: /* "UNLI" */
    case 0x4b4e494c: /* "LINK" */
    case 0x52414553: /* "SEAR" */
    case 0x4f504552: /* "REPO" */
    case 0x47525550: /* "PURG" */
    case 0x52455551: /* "QUER" */
        return 1;
    }
    return 0;
}

static __always_inline void fill_header(struct event_t *e, struct conn_t *c, u64 id, s32 fd, u8 kind) {
    e->ts = bpf_ktime_get_ns();
    e->conn_id = c->conn_id;
    e->pid = id >> 32;
    e->tid = (u32)id;
    e->fd = fd;
    e->kind = kind;
    e->role = c->role;
    e->family = c->family;
    e->lport = c->lport;
    e->rport = c->rport;
    __builtin_memcpy(e->laddr, c->laddr, 16);
    __builtin_memcpy(e->raddr, c->raddr, 16);
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
}

static __always_inline void emit_control(struct conn_t *c, u64 id, s32 fd, u8 kind) {
    int zero = 0;
    struct event_t *e = scratch.lookup(&zero);
    if (!e)
        return;
    fill_header(e, c, id, fd, kind);
    e->len = 0;
    e->cap = 0;
    e->seq = c->seq;
    e->dir = 0;
    e->source = 0;
    if (events.ringbuf_output(e, HDR_SIZE, RB_NO_WAKEUP_) != 0)
        count_lost();
}

static __always_inline void emit_data(struct conn_t *c, u64 id, s32 fd, u8 dir, u8 source,
                                      u64 buf, u64 len) {
    int zero = 0;
    struct event_t *e = scratch.lookup(&zero);
    if (!e)
        return;
    fill_header(e, c, id, fd, EV_DATA);
    /* A per-connection sequence number lets user space see lost events. */
    e->seq = c->seq;
    c->seq += 1;
    e->dir = dir;
    e->source = source;
    e->len = len;
    u32 cap = len < CAPTURE_BYTES ? len : CAPTURE_BYTES;
    if (buf == 0)
        cap = 0;
    asm volatile("%0 &= 0xffff" : "+r"(cap));
    if (cap > CAPTURE_BYTES)
        cap = CAPTURE_BYTES;
    e->cap = cap;
    if (cap > 0)
        bpf_probe_read_user(e->data, cap, (void *)buf);
    if (source == SRC_SYSCALL && c->proto == PROTO_UNKNOWN && cap >= 4) {
        u32 w = 0;
        __builtin_memcpy(&w, e->data, 4);
        if (!http_start(w)) {
            /* Not HTTP/1.x from its first bytes: this event is the last one (user
             * space sees it and gives up too); the connection stays tracked. */
            c->proto = PROTO_OTHER;
        } else {
            c->proto = PROTO_HTTP;
        }
    }
    u64 size = HDR_SIZE + cap;
    if (events.ringbuf_output(e, size, RB_NO_WAKEUP_) != 0)
        count_lost();
}

/* ------------------------------------------------------------ connections */

static __always_inline int read_sockaddr(u64 uaddr, u16 *family, u16 *port, u8 *addr) {
    u16 fam = 0;
    if (uaddr == 0)
        return 0;
    bpf_probe_read_user(&fam, sizeof(fam), (void *)uaddr);
    u16 p = 0;
    bpf_probe_read_user(&p, sizeof(p), (void *)(uaddr + 2));
    if (fam == AF_INET_) {
        bpf_probe_read_user(addr, 4, (void *)(uaddr + 4));
    } else if (fam == AF_INET6_) {
        bpf_probe_read_user(addr, 16, (void *)(uaddr + 8));
    } else {
        *family = fam;
        return 0;
    }
    *family = fam;
    *port = swap16(p);
    return 1;
}

static __always_inline int enter_accept(int fd, u64 uaddr) {
    u64 id = bpf_get_current_pid_tgid();
    if (!pid_allowed(id >> 32))
        return 0;
    u32 tid = (u32)id;
    struct accept_args_t a = {};
    a.addr = uaddr;
    a.listen_fd = fd;
    accept_args.update(&tid, &a);
    return 0;
}

static __always_inline int exit_accept(long ret) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    struct accept_args_t *a = accept_args.lookup(&tid);
    if (!a)
        return 0;
    u64 uaddr = a->addr;
    accept_args.delete(&tid);
    if (ret < 0)
        return 0;
    if (!comm_allowed())
        return 0;
    struct conn_t c = {};
    c.conn_id = bpf_ktime_get_ns();
    c.role = ROLE_SERVER;
    u16 family = 0, rport = 0;
    int inet = read_sockaddr(uaddr, &family, &rport, c.raddr);
    if (family != 0 && !inet)
        return 0; /* AF_UNIX and friends */
    c.family = family;
    c.rport = rport;
    if (inet) {
        struct addr_key_t k = {};
        k.family = family;
        k.port = rport;
        __builtin_memcpy(k.addr, c.raddr, 16);
        struct local_t *l = estab.lookup(&k);
        if (l) {
            c.lport = l->port;
            __builtin_memcpy(c.laddr, l->addr, 16);
            estab.delete(&k);
        }
    }
    if (!port_allowed(c.lport, c.rport))
        return 0;
    u64 key = (id & 0xffffffff00000000ULL) | (u32)ret;
    conns.update(&key, &c);
    emit_control(&c, id, (s32)ret, EV_OPEN);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_accept) {
    return enter_accept(args->fd, (u64)args->upeer_sockaddr);
}
TRACEPOINT_PROBE(syscalls, sys_exit_accept) {
    return exit_accept(args->ret);
}
TRACEPOINT_PROBE(syscalls, sys_enter_accept4) {
    return enter_accept(args->fd, (u64)args->upeer_sockaddr);
}
TRACEPOINT_PROBE(syscalls, sys_exit_accept4) {
    return exit_accept(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_connect) {
    u64 id = bpf_get_current_pid_tgid();
    if (!pid_allowed(id >> 32))
        return 0;
    u32 tid = (u32)id;
    struct connect_args_t a = {};
    a.addr = (u64)args->uservaddr;
    a.fd = args->fd;
    connect_args.update(&tid, &a);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_connect) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    struct connect_args_t *a = connect_args.lookup(&tid);
    if (!a)
        return 0;
    u64 uaddr = a->addr;
    s32 fd = a->fd;
    connect_args.delete(&tid);
    if (args->ret != 0 && args->ret != -EINPROGRESS_)
        return 0;
    if (!comm_allowed())
        return 0;
    struct conn_t c = {};
    c.conn_id = bpf_ktime_get_ns();
    c.role = ROLE_CLIENT;
    u16 family = 0, rport = 0;
    if (!read_sockaddr(uaddr, &family, &rport, c.raddr))
        return 0;
    c.family = family;
    c.rport = rport;
    u64 key = (id & 0xffffffff00000000ULL) | (u32)fd;
    struct local_t *l = client_local.lookup(&key);
    if (l) {
        c.lport = l->port;
        __builtin_memcpy(c.laddr, l->addr, 16);
        client_local.delete(&key);
    }
    if (!port_allowed(0, c.rport))
        return 0;
    conns.update(&key, &c);
    emit_control(&c, id, fd, EV_OPEN);
    return 0;
}

/* Local/remote addresses without reading kernel structs: the TCP state
 * changes carry both ends of the socket. */
TRACEPOINT_PROBE(sock, inet_sock_set_state) {
    if (args->protocol != IPPROTO_TCP_)
        return 0;
    u64 sk = (u64)args->skaddr;
    if (args->newstate == TCP_SYN_SENT_) {
        u64 id = bpf_get_current_pid_tgid();
        u32 tid = (u32)id;
        struct connect_args_t *a = connect_args.lookup(&tid);
        if (!a)
            return 0;
        u64 key = (id & 0xffffffff00000000ULL) | (u32)a->fd;
        sk_conn.update(&sk, &key);
        return 0;
    }
    if (args->newstate != TCP_ESTABLISHED_)
        return 0;
    struct local_t l = {};
    l.port = args->sport;
    if (args->family == AF_INET_)
        bpf_probe_read_kernel(l.addr, 4, args->saddr);
    else
        bpf_probe_read_kernel(l.addr, 16, args->saddr_v6);
    if (args->oldstate == TCP_SYN_SENT_) {
        u64 *key = sk_conn.lookup(&sk);
        if (!key)
            return 0;
        u64 k = *key;
        sk_conn.delete(&sk);
        struct conn_t *c = conns.lookup(&k);
        if (c) {
            c->lport = l.port;
            __builtin_memcpy(c->laddr, l.addr, 16);
        } else {
            client_local.update(&k, &l);
        }
        return 0;
    }
    struct addr_key_t k = {};
    k.family = args->family;
    k.port = args->dport;
    if (args->family == AF_INET_)
        bpf_probe_read_kernel(k.addr, 4, args->daddr);
    else
        bpf_probe_read_kernel(k.addr, 16, args->daddr_v6);
    estab.update(&k, &l);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_close) {
    u64 id = bpf_get_current_pid_tgid();
    u64 key = (id & 0xffffffff00000000ULL) | (u32)args->fd;
    struct conn_t *c = conns.lookup(&key);
    if (!c)
        return 0;
    struct conn_t copy = *c;
    conns.delete(&key);
    emit_control(&copy, id, (s32)args->fd, EV_CLOSE);
    return 0;
}

/* ------------------------------------------------------------------- data */

static __always_inline int enter_rw(int fd, u64 buf, u64 vlen, u8 vec) {
    u64 id = bpf_get_current_pid_tgid();
    if (!pid_allowed(id >> 32))
        return 0;
    u64 key = (id & 0xffffffff00000000ULL) | (u32)fd;
    struct conn_t *c = conns.lookup(&key);
    if (!c)
        return 0;
    u32 tid = (u32)id;
    struct ssl_args_t *s = ssl_args.lookup(&tid);
    if (s) {
        /* Inside SSL_read/SSL_write: remember which socket, skip ciphertext. */
        s->fd = fd;
        c->tls = 1;
        return 0;
    }
    if (c->tls || c->proto == PROTO_OTHER)
        return 0;
    struct rw_args_t a = {};
    a.buf = buf;
    a.vlen = vlen;
    a.fd = fd;
    a.vec = vec;
    rw_args.update(&tid, &a);
    return 0;
}

static __always_inline int exit_rw(long ret, u8 dir) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    struct rw_args_t *a = rw_args.lookup(&tid);
    if (!a)
        return 0;
    struct rw_args_t args_copy = *a;
    rw_args.delete(&tid);
    if (ret <= 0)
        return 0;
    u64 key = (id & 0xffffffff00000000ULL) | (u32)args_copy.fd;
    struct conn_t *c = conns.lookup(&key);
    if (!c)
        return 0;
    if (args_copy.vec == 0) {
        emit_data(c, id, args_copy.fd, dir, SRC_SYSCALL, args_copy.buf, ret);
        return 0;
    }
    u64 iov = args_copy.buf;
    u64 iovlen = args_copy.vlen;
    if (args_copy.vec == 2) {
        struct msghdr_t m = {};
        bpf_probe_read_user(&m, sizeof(m), (void *)args_copy.buf);
        iov = m.iov;
        iovlen = m.iovlen;
    }
    u64 left = ret;
#pragma unroll
    for (int i = 0; i < MAX_IOV; i++) {
        if (i >= iovlen || left == 0)
            break;
        struct iovec_t v = {};
        bpf_probe_read_user(&v, sizeof(v), (void *)(iov + i * sizeof(struct iovec_t)));
        u64 n = v.len < left ? v.len : left;
        if (n > 0)
            emit_data(c, id, args_copy.fd, dir, SRC_SYSCALL, v.base, n);
        left -= n;
    }
    if (left > 0) {
        /* More segments than MAX_IOV: report the rest as uncaptured bytes. */
        emit_data(c, id, args_copy.fd, dir, SRC_SYSCALL, 0, 0);
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_read) { return enter_rw(args->fd, (u64)args->buf, 0, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_read) { return exit_rw(args->ret, DIR_INGRESS); }
TRACEPOINT_PROBE(syscalls, sys_enter_write) { return enter_rw(args->fd, (u64)args->buf, 0, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_write) { return exit_rw(args->ret, DIR_EGRESS); }
TRACEPOINT_PROBE(syscalls, sys_enter_recvfrom) { return enter_rw(args->fd, (u64)args->ubuf, 0, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_recvfrom) { return exit_rw(args->ret, DIR_INGRESS); }
TRACEPOINT_PROBE(syscalls, sys_enter_sendto) { return enter_rw(args->fd, (u64)args->buff, 0, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_sendto) { return exit_rw(args->ret, DIR_EGRESS); }
TRACEPOINT_PROBE(syscalls, sys_enter_readv) { return enter_rw(args->fd, (u64)args->vec, args->vlen, 1); }
TRACEPOINT_PROBE(syscalls, sys_exit_readv) { return exit_rw(args->ret, DIR_INGRESS); }
TRACEPOINT_PROBE(syscalls, sys_enter_writev) { return enter_rw(args->fd, (u64)args->vec, args->vlen, 1); }
TRACEPOINT_PROBE(syscalls, sys_exit_writev) { return exit_rw(args->ret, DIR_EGRESS); }
TRACEPOINT_PROBE(syscalls, sys_enter_recvmsg) { return enter_rw(args->fd, (u64)args->msg, 0, 2); }
TRACEPOINT_PROBE(syscalls, sys_exit_recvmsg) { return exit_rw(args->ret, DIR_INGRESS); }
TRACEPOINT_PROBE(syscalls, sys_enter_sendmsg) { return enter_rw(args->fd, (u64)args->msg, 0, 2); }
TRACEPOINT_PROBE(syscalls, sys_exit_sendmsg) { return exit_rw(args->ret, DIR_EGRESS); }

/* sendfile: the bytes come from a file, not user memory; report their count
 * so the body length stays right (buf 0 captures nothing). */
TRACEPOINT_PROBE(syscalls, sys_enter_sendfile64) { return enter_rw(args->out_fd, 0, 0, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_sendfile64) { return exit_rw(args->ret, DIR_EGRESS); }

/* -------------------------------------------------------------- OpenSSL */
{{TLS_PROBES}}
