"""Broken authentication (API2): credential stuffing against login routes (one
client or many), credentials in URLs, and successful calls without credentials
on routes whose calls usually carry them."""

from __future__ import annotations

import re

from enrichers.abuse import rules
from enrichers.abuse.baselines import AbuseState
from enrichers.abuse.context import EndpointRef, Request
from enrichers.abuse.findings import FindingSink
from enrichers.abuse.identity import SERVICE_PREFIX
from enrichers.abuse.settings import AbuseSettings
from enrichers.abuse.windows import WindowFrame, iter_rows

CRED_PARAM_NAMES = (
    r"password|passwd|pwd|pass|passphrase|secret|client_secret|token|access_token|id_token|refresh_token"
    r"|auth|auth_token|authtoken|api_key|apikey|api-key|x-api-key|session|sessionid|session_id|jwt|private_key"
)
_CRED_PARAM = re.compile(f"^({CRED_PARAM_NAMES})$", re.I)


def check_url(req: Request, sink: FindingSink) -> None:
    """Credentials in the query string (names only are kept, never values)."""
    names = sorted({k.lower() for k, v in req.params or () if v and _CRED_PARAM.match(k)})
    if not names and "@" in req.http.url and "://" in req.http.url:
        netloc = req.http.url.split("://", 1)[1].split("/", 1)[0]
        if ":" in netloc.split("@", 1)[0] and "@" in netloc:
            names = ["userinfo"]
    if not names:
        return
    sink.hit(
        rules.CREDS_IN_URL, req.ep.subject(detail=",".join(names)), first_ns=req.ts, confidence=0.9,
        explanation=f"credential parameter(s) {', '.join(names)} sent in the URL of {req.ep.route}",
        evidence={"parameters": names, "last_client": req.client},
        trace_ids=(req.span.trace_id,), span_ids=(req.span.span_id,),
    )


#: Failing clients a "distributed" credential-stuffing finding needs at least.
_DISTRIBUTED_MIN_CLIENTS = 3


def on_window(
    w: WindowFrame, st: AbuseState, sink: FindingSink, s: AbuseSettings, eps: dict[str, EndpointRef],
) -> None:
    ws = s.window_seconds
    for key, row in iter_rows(w.ep):
        ref = eps.get(str(key))
        if ref is None:
            continue
        b = st.endpoints.get(str(key))
        if ref.info.login:
            cands = w.cl.loc[key]
            for client, crow in iter_rows(cands[cands["deny"] >= s.stuffing_client_min]):
                if str(client).startswith(SERVICE_PREFIX):
                    # a gateway forwarding users' logins is not the stuffer: the edge service
                    # names the real client, and the endpoint-wide check below counts it
                    continue
                fails = int(crow["deny"])
                sink.hit(
                    rules.STUFFING, ref.subject(str(client)), first_ns=int(crow["tmin"]),
                    last_ns=int(crow["tmax"]), count=fails, confidence=min(0.99, 0.7 + fails / 500),
                    explanation=f"{client} failed {fails} logins in {ws:g}s",
                    evidence={"failed_logins_per_window": fails, "threshold": s.stuffing_client_min,
                              "baseline_failures_per_window": round(b.fail_count.mean, 1) if b else 0},
                    trace_ids=w.client_traces(str(key), str(client)),
                )
            fails = int(row["deny"])
            if b is not None and b.warm(w.start_ns, s) and fails >= s.stuffing_endpoint_min:
                usual = b.fail_count.mean + 3 * b.fail_count.dev
                nclients = int((cands["deny"] > 0).sum())
                # distributed: the failures come from several clients (one client is the
                # per-client check above)
                if fails > s.stuffing_endpoint_ratio * max(usual, 1.0) and nclients >= _DISTRIBUTED_MIN_CLIENTS:
                    sink.hit(
                        rules.STUFFING, ref.subject(detail="distributed"), first_ns=int(row["tmin"]),
                        last_ns=int(row["tmax"]), count=fails, confidence=0.8,
                        explanation=(f"{fails} failed logins from {nclients} clients in {ws:g}s; "
                                     f"usually {b.fail_count.mean:.0f} (at most {usual:.0f})"),
                        evidence={"failed_logins_per_window": fails, "distinct_clients": nclients,
                                  "baseline_failures_per_window": round(b.fail_count.mean, 1),
                                  "usual_max_failures_per_window": round(usual, 1)},
                        trace_ids=w.traces(w.ep_pos[key]),
                    )
        if (
            b is not None
            and b.warm(w.start_ns, s)
            and b.auth_yes + b.auth_no >= s.auth_usual_min
            and b.auth_share >= s.auth_usual_share
            and not ref.info.login
        ):
            cands = w.cl.loc[key]
            anon = cands[cands["noauth_ok"] > 0]
            if anon.empty:
                continue
            ev = {"baseline_share_with_credentials": round(b.auth_share, 4)}
            if len(anon) > 3:
                # Many clients: one finding about the endpoint, not one per client.
                k = int(anon["noauth_ok"].sum())
                sink.hit(
                    rules.MISSING_CREDS, ref.subject(detail="many clients"), first_ns=int(anon["tmin"].min()),
                    last_ns=int(anon["tmax"].max()), count=k, confidence=0.75,
                    explanation=f"{k} successful calls without credentials from {len(anon)} clients; "
                    f"{b.auth_share:.1%} of calls here carry them",
                    evidence={**ev, "observed_without_credentials": k, "distinct_clients": len(anon)},
                    trace_ids=w.traces(w.ep_pos[key]),
                )
                continue
            for client, crow in iter_rows(anon):
                k = int(crow["noauth_ok"])
                sink.hit(
                    rules.MISSING_CREDS, ref.subject(str(client)), first_ns=int(crow["tmin"]),
                    last_ns=int(crow["tmax"]), count=k, confidence=0.75,
                    explanation=f"{k} successful call(s) without credentials; {b.auth_share:.1%} of calls here carry them",
                    evidence={**ev, "observed_without_credentials": k},
                    trace_ids=w.client_traces(str(key), str(client)),
                )
