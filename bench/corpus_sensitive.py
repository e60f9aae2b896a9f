"""A labelled corpus of telemetry-like lines with sensitive values and hard negatives.

Every sensitive type apiward recognises is placed inside realistic attribute
strings (``key=value``), URLs and query strings, HTTP headers, JSON bodies and log
or exception messages, with values from Faker in several locales plus our own
generators (tokens, keys, identifiers with valid checksums). Hard negatives —
digit strings that fail Luhn, UUIDs, version numbers, timestamps, order numbers,
hashes, base64 blobs, trace ids — fill the rest of each line.

``generate(n, seed)`` returns ``[(line, [(type, start, end), ...])]``; the gold
span is the sensitive value itself (for ``Bearer <token>`` the token). Every line
holds a value or a hard negative: a *dense* corpus, the worst case for a scanner.

``generate_realistic(n, seed, share)`` is the mix real telemetry has: most attribute
values are benign (URL paths and full URLs with ids, user agents, SQL with
placeholders, timestamps, host and pod names, private peer addresses, log and
exception messages, stack frames, trace headers, small JSON bodies; private peer
addresses are labelled ``PRIVATE_IP_ADDRESS``), and only
``share`` of the lines (default 5%) come from the dense generator.
Run it to print a few samples: ``python bench/corpus_sensitive.py 5 [seed] [realistic]``.
"""

from __future__ import annotations

import base64
import hashlib
import random
import string
import sys
import uuid
import zlib
from collections.abc import Callable

import jwt
import phonenumbers
from faker import Faker
from stdnum import luhn, verhoeff

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "en_IN", "pt_BR", "es_ES", "en_CA", "nl_NL", "it_IT")
REGION = {"en_US": "US", "en_GB": "GB", "de_DE": "DE", "fr_FR": "FR", "en_IN": "IN", "pt_BR": "BR",
          "es_ES": "ES", "en_CA": "CA", "nl_NL": "NL", "it_IT": "IT"}  # fmt: skip

Value = tuple[str, int, int]  # fragment, start and end of the sensitive part in it


class _Gen:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        Faker.seed(seed)
        self.fk = {loc: Faker(loc) for loc in LOCALES}
        for i, f in enumerate(self.fk.values()):
            f.seed_instance(seed + i)
        self.us = self.fk["en_US"]

    def loc(self) -> Faker:
        return self.fk[self.r.choice(LOCALES)]

    def alnum(self, n: int, chars: str = string.ascii_letters + string.digits) -> str:
        return "".join(self.r.choice(chars) for _ in range(n))

    # ----------------------------------------------------------------- values
    def email(self) -> str:
        return self.loc().email()

    def phone(self, keyed: bool) -> str:
        for _ in range(50):
            loc = self.r.choice(LOCALES)
            raw = self.fk[loc].phone_number()
            try:
                num = phonenumbers.parse(raw, REGION[loc])
            except phonenumbers.NumberParseException:
                continue
            if not phonenumbers.is_valid_number(num):
                continue
            if keyed and self.r.random() < 0.5:
                return raw if "x" not in raw else raw.split("x")[0].strip()
            return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        return "+1 212-555-0143"

    def nino(self) -> str:
        first = self.r.choice("ABCEGHJKLMNOPRSTWXYZ")
        second = self.r.choice("ABCEGHJKLMNPRSTWXYZ")
        if first + second in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ"):
            first, second = "A", "B"
        d = "".join(self.r.choice(string.digits) for _ in range(6))
        sep = self.r.choice(["", " "])
        return f"{first}{second}{sep}{d[:2]}{sep}{d[2:4]}{sep}{d[4:]}{sep}{self.r.choice('ABCD')}"

    def aadhaar(self) -> str:
        body = str(self.r.randint(2, 9)) + "".join(self.r.choice(string.digits) for _ in range(10))
        n = body + verhoeff.calc_check_digit(body)
        return self.r.choice([n, f"{n[:4]} {n[4:8]} {n[8:]}"])

    def pan(self) -> str:
        up = string.ascii_uppercase
        return (self.alnum(3, up) + self.r.choice("PCHFATBLJG") + self.alnum(1, up)
                + "".join(self.r.choice(string.digits) for _ in range(4)) + self.alnum(1, up))

    def npi(self) -> str:
        body = self.r.choice("12") + "".join(self.r.choice(string.digits) for _ in range(8))
        return body + luhn.calc_check_digit("80840" + body)

    def dea(self) -> str:
        d = [self.r.randint(0, 9) for _ in range(6)]
        check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
        return self.r.choice("ABFGMPR") + self.r.choice(string.ascii_uppercase) + "".join(map(str, d)) + str(check)

    def mbi(self) -> str:
        letters = "ACDEFGHJKMNPQRTUVWXY"
        an = letters + string.digits
        r = self.r
        return (str(r.randint(1, 9)) + r.choice(letters) + r.choice(an) + str(r.randint(0, 9))
                + r.choice(letters) + r.choice(an) + str(r.randint(0, 9))
                + r.choice(letters) + r.choice(letters) + str(r.randint(0, 9)) + str(r.randint(0, 9)))

    def imei(self) -> str:
        body = "35" + "".join(self.r.choice(string.digits) for _ in range(12))
        return body + luhn.calc_check_digit(body)

    def btc(self) -> str:
        payload = bytes([0]) + self.r.randbytes(20)
        check = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
        raw = payload + check
        n = int.from_bytes(raw, "big")
        alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
        out = ""
        while n:
            n, rem = divmod(n, 58)
            out = alphabet[rem] + out
        pad = len(raw) - len(raw.lstrip(b"\0"))
        return "1" * pad + out

    def card(self) -> str:
        kind = self.r.choice(["visa16", "mastercard", "amex", "discover"])  # Faker's JCB ranges are not real ones
        num = self.us.credit_card_number(card_type=kind)
        style = self.r.random()
        if style < 0.4 and len(num) == 16:
            sep = self.r.choice([" ", "-"])
            return sep.join(num[i : i + 4] for i in range(0, 16, 4))
        return num

    def iban(self) -> str:
        code = self.fk[self.r.choice(["de_DE", "fr_FR", "nl_NL", "es_ES", "en_GB", "it_IT"])].iban()
        if self.r.random() < 0.4:
            return " ".join(code[i : i + 4] for i in range(0, len(code), 4))
        return code

    def jwt(self) -> str:
        claims = {"sub": str(self.r.randint(1, 10**9)), "iat": 1700000000 + self.r.randint(0, 10**7),
                  "name": self.us.name(), "scope": "read write"}
        return jwt.encode(claims, self.alnum(32), algorithm=self.r.choice(["HS256", "HS384", "HS512"]))

    def crc_token(self, prefix: str) -> str:
        from enrichers.sensitive.recognizers.vendor_tokens import base62

        body = self.alnum(30)
        return prefix + body + base62(zlib.crc32(body.encode()))

    def pem(self) -> str:
        blob = base64.b64encode(self.r.randbytes(180)).decode()
        lines = "\\n".join(blob[i : i + 64] for i in range(0, len(blob), 64))
        kind = self.r.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
        return f"-----BEGIN {kind}-----\\n{lines}\\n-----END {kind}-----"

    def dob(self) -> str:
        d = self.us.date_of_birth(minimum_age=18, maximum_age=90)
        return self.r.choice([d.isoformat(), d.strftime("%m/%d/%Y"), d.strftime("%d.%m.%Y"), d.strftime("%d %b %Y")])


def _types(g: _Gen) -> dict[str, tuple[Callable[[], Value], tuple[str, ...], bool]]:
    """type -> (value maker, field names giving context, whether context is required)."""
    r = g.r
    hexd = "0123456789abcdef"

    def whole(f: Callable[[], str]) -> Callable[[], Value]:
        def mk() -> Value:
            v = f()
            return v, 0, len(v)

        return mk

    def prefixed(prefix: str, f: Callable[[], str]) -> Callable[[], Value]:
        def mk() -> Value:
            v = f()
            return prefix + v, len(prefix), len(prefix) + len(v)

        return mk

    def conn() -> Value:
        pw = g.alnum(r.randint(8, 16))
        scheme = r.choice(["postgres", "postgresql", "mysql", "mongodb", "redis", "amqp"])
        head = f"{scheme}://{g.us.user_name()}:"
        return f"{head}{pw}@{g.us.domain_word()}-db.internal:5432/app", len(head), len(head) + len(pw)

    def urlcred() -> Value:
        pw = g.alnum(r.randint(8, 14))
        head = f"https://{g.us.user_name()}:"
        return f"{head}{pw}@{g.us.domain_name()}/repo.git", len(head), len(head) + len(pw)

    def sas() -> Value:
        sig = base64.b64encode(r.randbytes(32)).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        head = f"https://{g.alnum(8, string.ascii_lowercase)}.blob.core.windows.net/c/b.pdf?sv=2022-11-02&ss=b&sp=r&se=2025-01-01T00:00:00Z&sig="
        return head + sig, len(head), len(head) + len(sig)

    def azure() -> Value:
        key = base64.b64encode(r.randbytes(64)).decode()
        head = f"DefaultEndpointsProtocol=https;AccountName={g.alnum(10, string.ascii_lowercase)};AccountKey="
        return head + key + ";EndpointSuffix=core.windows.net", len(head), len(head) + len(key)

    def gsa() -> Value:
        kid = "".join(r.choice(hexd) for _ in range(40))
        head = '{"type": "service_account", "project_id": "shop-prod", "private_key_id": "'
        return head + kid + '", "client_id": "10887342197012"}', len(head), len(head) + 40

    def basic() -> Value:
        tok = base64.b64encode(f"{g.us.user_name()}:{g.alnum(10)}".encode()).decode()
        return "Basic " + tok, 6, 6 + len(tok)

    def bearer() -> Value:
        tok = g.alnum(r.randint(24, 40), string.ascii_letters + string.digits + "-_")
        return "Bearer " + tok, 7, 7 + len(tok)

    def ip_pub() -> str:
        return g.us.ipv4_public() if r.random() < 0.8 else g.us.ipv6()

    def addr() -> str:
        return g.loc().street_address().replace("\n", ", ")

    return {
        "EMAIL_ADDRESS": (whole(g.email), ("email", "user.email", "contact_email"), False),
        "PHONE_NUMBER": (whole(lambda: g.phone(False)), ("phone", "mobile", "tel"), False),
        "US_SSN": (whole(g.us.ssn), ("ssn", "customer.ssn", "social_security_number"), False),
        "US_ITIN": (whole(g.us.itin), ("itin", "taxpayer_itin"), False),
        "UK_NINO": (whole(g.nino), ("nino", "national_insurance_number"), False),
        "CA_SIN": (whole(g.fk["en_CA"].ssn), ("sin", "social_insurance_number"), True),
        "IN_AADHAAR": (whole(g.aadhaar), ("aadhaar", "aadhaar_number"), True),
        "IN_PAN": (whole(g.pan), ("pan", "pan_number"), False),
        "BR_CPF": (whole(g.fk["pt_BR"].cpf), ("cpf", "cliente_cpf"), False),
        "BR_CNPJ": (whole(g.fk["pt_BR"].cnpj), ("cnpj", "empresa_cnpj"), False),
        "ES_NIF": (whole(g.fk["es_ES"].nif), ("dni", "nif"), False),
        "ES_NIE": (whole(g.fk["es_ES"].nie), ("nie", "documento_nie"), False),
        "PASSPORT": (whole(g.us.passport_number), ("passport", "passport_number", "passportNo"), True),
        "DRIVER_LICENSE": (whole(lambda: r.choice("ABDFGHKLMNPS") + str(r.randint(1000000, 99999999))),
                           ("driver_license", "drivers_license_number", "dl_number"), True),
        "DATE_OF_BIRTH": (whole(g.dob), ("dob", "date_of_birth", "birthDate"), True),
        "STREET_ADDRESS": (whole(addr), ("address", "shipping_address", "street"), True),
        "CREDIT_CARD": (whole(g.card), ("card", "card_number", "pan"), False),
        "CARD_CVV": (whole(g.us.credit_card_security_code), ("cvv", "cvc", "card_cvv"), True),
        "CARD_EXPIRY": (whole(g.us.credit_card_expire), ("exp", "expiry", "card_expiration"), True),
        "IBAN_CODE": (whole(g.iban), ("iban", "account_iban"), False),
        "SWIFT_CODE": (whole(g.us.swift), ("swift", "bic", "swift_code"), True),
        "ABA_ROUTING_NUMBER": (whole(g.us.aba), ("routing_number", "aba"), True),
        "US_BANK_NUMBER": (whole(lambda: str(r.randint(10**7, 10**12))), ("account_number", "bank_account"), True),
        "CRYPTO": (whole(lambda: g.btc() if r.random() < 0.7 else "0x" + "".join(r.choice(hexd) for _ in range(40))),
                   ("wallet", "btc_address"), False),
        "US_NPI": (whole(g.npi), ("npi", "provider_npi"), True),
        "MEDICAL_LICENSE": (whole(g.dea), ("dea", "dea_number"), False),
        "US_MBI": (whole(g.mbi), ("mbi", "medicare_id"), False),
        "MEDICAL_RECORD_NUMBER": (whole(lambda: f"MRN{r.randint(100000, 9999999)}"), ("mrn", "medical_record_number"), True),
        "ICD10_CODE": (whole(lambda: r.choice(["E11.9", "I10", "J45.909", "M54.5", "F32.A", "K21.9", "Z79.4", "C50.911"])),
                       ("icd10", "diagnosis_code"), True),
        "JWT": (whole(g.jwt), ("token", "id_token", "access_token"), False),
        "HTTP_BASIC_AUTH": (basic, ("authorization",), False),
        "BEARER_TOKEN": (bearer, ("authorization",), False),
        "PASSWORD": (whole(lambda: g.us.password(length=r.randint(8, 16), special_chars=r.random() < 0.5)), ("password", "passwd", "user.password"), True),
        "PRIVATE_KEY": (whole(g.pem), ("private_key", "tls_key"), False),
        "AWS_ACCESS_KEY_ID": (whole(lambda: "AKIA" + g.alnum(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")), ("aws_access_key_id",), False),
        "AWS_SECRET_ACCESS_KEY": (whole(lambda: g.alnum(40, string.ascii_letters + string.digits + "/+")),
                                  ("aws_secret_access_key",), True),
        "GCP_API_KEY": (whole(lambda: "AIza" + g.alnum(35, string.ascii_letters + string.digits + "_-")), ("key", "api_key"), False),
        "GCP_SERVICE_ACCOUNT_KEY": (gsa, ("credentials",), False),
        "AZURE_CONNECTION_STRING": (azure, ("connection_string",), False),
        "AZURE_SAS_TOKEN": (sas, ("blob_url",), False),
        "GITHUB_TOKEN": (whole(lambda: g.crc_token(r.choice(["ghp_", "gho_", "ghs_"]))), ("github_token",), False),
        "GITLAB_TOKEN": (whole(lambda: "glpat-" + g.alnum(20, string.ascii_letters + string.digits + "_-")), ("gitlab_token",), False),
        "SLACK_TOKEN": (whole(lambda: f"xoxb-{r.randint(10**10, 10**11)}-{r.randint(10**10, 10**11)}-{g.alnum(24)}"), ("slack_token",), False),
        "STRIPE_API_KEY": (whole(lambda: r.choice(["sk_live_", "rk_live_", "sk_test_"]) + g.alnum(24)), ("stripe_key",), False),
        "TWILIO_API_KEY": (whole(lambda: "SK" + "".join(r.choice(hexd) for _ in range(32))), ("twilio_api_key",), False),
        "SENDGRID_API_KEY": (whole(lambda: f"SG.{g.alnum(22, string.ascii_letters + string.digits + '_-')}.{g.alnum(43, string.ascii_letters + string.digits + '_-')}"),
                             ("sendgrid_api_key",), False),
        "NPM_TOKEN": (whole(lambda: g.crc_token("npm_")), ("npm_token",), False),
        "DB_CONNECTION_STRING": (conn, ("database_url", "dsn"), False),
        "URL_CREDENTIALS": (urlcred, ("remote",), False),
        "GENERIC_SECRET": (whole(lambda: g.alnum(r.randint(24, 48))), ("client_secret", "api_key", "x-api-key"), True),
        "IP_ADDRESS": (whole(ip_pub), ("client_ip", "remote_addr"), False),
        "PRIVATE_IP_ADDRESS": (whole(g.us.ipv4_private), ("peer_ip",), False),
        "MAC_ADDRESS": (whole(g.us.mac_address), ("mac", "device_mac"), False),
        "IMEI": (whole(g.imei), ("imei", "device_imei"), True),
    }


def _negatives(g: _Gen) -> list[Callable[[], str]]:
    r = g.r

    def bad_luhn() -> str:
        while True:
            n = "4" + "".join(r.choice(string.digits) for _ in range(15))
            if not luhn.is_valid(n):
                return n

    return [
        lambda: str(uuid.UUID(int=r.getrandbits(128), version=4)),
        lambda: f"v{r.randint(0, 9)}.{r.randint(0, 40)}.{r.randint(0, 20)}",
        lambda: f"{r.randint(2019, 2025)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}.{r.randint(0, 999):03d}Z",
        lambda: str(1700000000000 + r.randint(0, 10**10)),
        lambda: f"ORD-{r.randint(2019, 2025)}{r.randint(1, 12):02d}-{r.randint(10000, 99999)}",
        bad_luhn,
        lambda: hashlib.sha256(r.randbytes(8)).hexdigest(),
        lambda: hashlib.md5(r.randbytes(8)).hexdigest(),  # noqa: S324 - a hard negative, not security
        lambda: base64.b64encode(r.randbytes(r.randint(12, 30))).decode(),
        lambda: f"{r.getrandbits(128):032x}",
        lambda: f"{r.randint(1, 999)}.{r.randint(0, 99):02d}",
        lambda: str(r.randint(10**8, 10**9 - 1)),
        lambda: f"{r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}-beta",
        lambda: f"sha1:{hashlib.sha1(r.randbytes(6)).hexdigest()}",  # noqa: S324
    ]


_NEG_KEYS = ("order_id", "request_id", "trace_id", "version", "build", "checksum", "etag", "amount",
             "created_at", "sku", "invoice", "duration_ms", "item_count")  # fmt: skip
_PATHS = ("/api/v1/users", "/api/v2/orders", "/checkout", "/v1/payments", "/patients/search", "/accounts/lookup")
_HOSTS = ("api.example.com", "payments.acme.io", "orders.svc.cluster.local", "billing:8080", "auth.internal")


def generate(n: int, seed: int = 7) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """``n`` labelled lines (see the module docstring); deterministic for a seed."""
    g = _Gen(seed)
    r = g.r
    types = _types(g)
    names = sorted(types)
    negs = _negatives(g)
    out: list[tuple[str, list[tuple[str, int, int]]]] = []
    for i in range(n):
        neg_k = r.choice(_NEG_KEYS)
        neg_v = r.choice(negs)()
        if i % 5 == 4:  # a line with hard negatives only
            shape = r.randrange(4)
            if shape == 0:
                line = f'{{"{neg_k}": "{neg_v}", "status": "ok", "{r.choice(_NEG_KEYS)}": "{r.choice(negs)()}"}}'
            elif shape == 1:
                line = f"GET https://{r.choice(_HOSTS)}{r.choice(_PATHS)}/{neg_v}?page={r.randint(1, 9)}&{neg_k}={r.choice(negs)()}"
            elif shape == 2:
                line = f"app.{neg_k}={neg_v}"
            else:
                line = f"processed {neg_k} {neg_v} in {r.randint(1, 900)}ms (build {r.choice(negs)()})"
            out.append((line, []))
            continue
        typ = names[i % len(names)]
        maker, keys, needs_key = types[typ]
        frag, a, b = maker()
        key = r.choice(keys)
        shape = r.randrange(5)
        if typ in ("HTTP_BASIC_AUTH", "BEARER_TOKEN"):
            shape = r.choice([2, 5])
        elif typ in ("GCP_SERVICE_ACCOUNT_KEY",):
            shape = 6
        elif typ in ("AZURE_SAS_TOKEN", "DB_CONNECTION_STRING", "URL_CREDENTIALS", "AZURE_CONNECTION_STRING"):
            shape = r.choice([3, 4])
        elif not needs_key and r.random() < 0.3:
            shape = 4
        if shape == 0:  # query string: spaces arrive form-encoded
            frag = frag.replace(" ", "+")
            pre = f"GET https://{r.choice(_HOSTS)}{r.choice(_PATHS)}?{neg_k}={neg_v}&{key}="
            post = f"&page={r.randint(1, 9)}"
        elif shape == 1:  # JSON body
            pre = f'{{"{neg_k}": "{neg_v}", "{key}": "'
            post = f'", "currency": "EUR", "created_at": "{negs[2]()}"}}'
        elif shape == 2:  # header dump
            hname = "Authorization" if typ in ("HTTP_BASIC_AUTH", "BEARER_TOKEN") else "X-" + key.replace("_", "-").title()
            pre = f"{hname}: "
            post = f" | X-Request-Id: {negs[0]()}"
        elif shape == 3:  # attribute string
            pre = f"app.{key}={'' if shape == 3 else ''}"
            post = ""
            if typ in ("AZURE_SAS_TOKEN", "DB_CONNECTION_STRING", "URL_CREDENTIALS", "AZURE_CONNECTION_STRING"):
                pre = f"app.config.{key}="
        elif shape == 5:  # header-ish log line
            pre = f"outgoing request {neg_k}={neg_v} Authorization: "
            post = ""
        elif shape == 6:
            pre = "loaded credentials file: "
            post = ""
        else:  # log / exception message without a field name
            pre = r.choice([
                "payment failed for ", "could not process ", "lookup returned ", "invalid value ",
                "error: unexpected input ", "retrying upload with ",
            ])
            post = f" (order {negs[4]()}, took {r.randint(1, 900)}ms)"
            if needs_key:
                pre = f"validation failed: {key}={''}"
        line = pre + frag + post
        gold = [(typ, len(pre) + a, len(pre) + b)]
        out.append((line, gold))
    return out


_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "python-requests/2.{m}.0",
    "okhttp/4.{m}.2",
    "Go-http-client/1.1",
    "grpc-java-netty/1.{v}.0",
)
_SQL = (
    "SELECT id, name, price, stock FROM products WHERE category_id = $1 ORDER BY price LIMIT {n}",
    "UPDATE orders SET status = ?, updated_at = ? WHERE id = ?",
    "INSERT INTO order_items (order_id, sku, qty, unit_price) VALUES (?, ?, ?, ?)",
    "SELECT o.id, o.total FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.id = %s",
    "DELETE FROM sessions WHERE expires_at < now() - interval '{n} days'",
)
_WORDS = ("shoes", "laptop", "coffee", "garden", "books", "lamp", "desk", "socks", "phone case", "kettle")
_SERVICES = ("gateway", "users", "orders", "payments", "inventory", "search", "catalog", "shipping")


def _benign(g: _Gen) -> Callable[[], str]:
    """A maker of benign telemetry values (no sensitive data), one shape per call."""
    r = g.r

    def uid() -> str:
        return str(uuid.UUID(int=r.getrandbits(128), version=4))

    def hexs(n: int) -> str:
        return f"{r.getrandbits(4 * n):0{n}x}"

    def ts() -> str:
        return (f"{r.randint(2023, 2025)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T"
                f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}.{r.randint(0, 999999):06d}Z")

    svc = lambda: r.choice(_SERVICES)  # noqa: E731
    shapes: list[Callable[[], str]] = [
        lambda: f"/api/v1/{r.choice(['orders', 'users', 'products', 'carts'])}/{r.randint(1, 10**7)}",
        lambda: f"/api/v2/users/{uid()}/orders",
        lambda: f"https://{svc()}.shop.svc.cluster.local:8080/api/{r.choice(['items', 'stock', 'prices'])}/{r.randint(1, 99999)}",
        lambda: f"https://api.example.com/v2/search?q={r.choice(_WORDS).replace(' ', '+')}&page={r.randint(1, 20)}&sort=price_asc",
        lambda: f"/static/js/app.{hexs(8)}.js",
        lambda: r.choice(_UAS).format(v=r.randint(100, 126), m=r.randint(0, 31)),
        lambda: r.choice(_SQL).format(n=r.randint(1, 500)),
        ts,
        lambda: f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
        lambda: f"{svc()}-{hexs(10)}-{g.alnum(5, string.ascii_lowercase + string.digits)}",
        lambda: f"00-{hexs(32)}-{hexs(16)}-01",
        lambda: r.choice(["application/json; charset=utf-8", "text/html", "application/grpc", "gzip, deflate, br"]),
        lambda: f"cache miss for key product:{r.randint(1, 10**6)} in {r.randint(1, 80)}ms",
        lambda: f"retrying request to {svc()} (attempt {r.randint(2, 3)}/3) after {r.randint(100, 900)}ms",
        lambda: f"TimeoutError: read timed out after {r.randint(1, 30)}.0s calling {svc()}:{r.choice([8080, 50051])}",
        lambda: f"KeyError: '{r.choice(['sku', 'qty', 'variant', 'region'])}'",
        lambda: f'  File "/app/{svc()}/service.py", line {r.randint(10, 900)}, in {r.choice(["create_order", "get_cart", "charge", "reserve"])}',
        lambda: (f'{{"items": {r.randint(1, 9)}, "total": {r.randint(1, 999)}.{r.randint(0, 99):02d}, '
                 f'"currency": "EUR", "order_id": "{uid()}", "created_at": "{ts()}"}}'),
        lambda: f"orders.{r.choice(['created', 'paid', 'shipped'])} partition={r.randint(0, 11)} offset={r.randint(10**5, 10**8)}",
        lambda: f"GET /api/v1/products/{r.randint(1, 99999)}",
        lambda: f"{r.randint(1, 20)}.{r.randint(0, 30)}.{r.randint(0, 9)}",
    ]
    negs = _negatives(g)

    def make() -> str:
        if r.random() < 0.1:
            return r.choice(negs)()
        return r.choice(shapes)()

    return make


def generate_realistic(n: int, seed: int = 7, share: float = 0.05) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """``n`` labelled lines, ``share`` of them with a sensitive value (see the module docstring)."""
    g = _Gen(seed + 1000)
    benign = _benign(g)
    k = max(1, round(n * share))
    dense = generate(k, seed)
    slots = set(g.r.sample(range(n), k))
    out: list[tuple[str, list[tuple[str, int, int]]]] = []
    it = iter(dense)
    for i in range(n):
        if i in slots:
            out.append(next(it))
            continue
        line = benign()
        # Peer addresses are private IPs: labelled as such, like in the dense corpus.
        gold = [("PRIVATE_IP_ADDRESS", 0, len(line))] if line.startswith("10.") and line.count(".") == 3 else []
        out.append((line, gold))
    return out


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    gen = generate_realistic if len(sys.argv) > 3 and sys.argv[3] == "realistic" else generate
    for line, gold in gen(n, seed):
        print(gold, line)
