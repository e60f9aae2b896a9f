/* Uprobes on OpenSSL: plaintext of SSL_read/SSL_write (and the _ex variants),
 * attributed to the socket through SSL_set_fd or through the read/write
 * syscall the same thread makes while inside the SSL call. */
static __always_inline int ssl_enter(struct pt_regs *ctx, u64 ex_len) {
    u64 id = bpf_get_current_pid_tgid();
    if (!pid_allowed(id >> 32))
        return 0;
    u32 tid = (u32)id;
    struct ssl_args_t a = {};
    a.ssl = PT_REGS_PARM1(ctx);
    a.buf = PT_REGS_PARM2(ctx);
    a.ex_len = ex_len;
    a.fd = -1;
    ssl_args.update(&tid, &a);
    return 0;
}

static __always_inline int ssl_exit(struct pt_regs *ctx, u8 dir) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    struct ssl_args_t *p = ssl_args.lookup(&tid);
    if (!p)
        return 0;
    struct ssl_args_t a = *p;
    ssl_args.delete(&tid);
    long ret = PT_REGS_RC(ctx);
    u64 len = 0;
    if (a.ex_len) {
        if (ret != 1)
            return 0;
        bpf_probe_read_user(&len, sizeof(len), (void *)a.ex_len);
    } else {
        if (ret <= 0)
            return 0;
        len = ret;
    }
    s32 fd = a.fd;
    if (fd >= 0) {
        ssl_fd.update(&a.ssl, &fd);
    } else {
        s32 *known = ssl_fd.lookup(&a.ssl);
        if (!known)
            return 0;
        fd = *known;
    }
    u64 key = (id & 0xffffffff00000000ULL) | (u32)fd;
    struct conn_t *c = conns.lookup(&key);
    if (!c)
        return 0;
    c->tls = 1;
    emit_data(c, id, fd, dir, SRC_TLS, a.buf, len);
    return 0;
}

int probe_ssl_rw_enter(struct pt_regs *ctx) { return ssl_enter(ctx, 0); }
int probe_ssl_rw_ex_enter(struct pt_regs *ctx) { return ssl_enter(ctx, PT_REGS_PARM4(ctx)); }
int probe_ssl_read_exit(struct pt_regs *ctx) { return ssl_exit(ctx, DIR_INGRESS); }
int probe_ssl_write_exit(struct pt_regs *ctx) { return ssl_exit(ctx, DIR_EGRESS); }

int probe_ssl_set_fd(struct pt_regs *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    if (!pid_allowed(id >> 32))
        return 0;
    u64 ssl = PT_REGS_PARM1(ctx);
    s32 fd = (s32)PT_REGS_PARM2(ctx);
    ssl_fd.update(&ssl, &fd);
    return 0;
}
