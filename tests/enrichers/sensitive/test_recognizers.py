"""Every recognizer, valid and invalid cases side by side (Presidio style).

Each row: the type, the text (and optional field name giving key context), and
whether that type must be found. The invalid rows are near misses: wrong
checksums, reserved ranges, look-alikes.
"""

from __future__ import annotations

import pytest

from enrichers.sensitive.recognizers import ALL
from enrichers.sensitive.scanner import SensitiveDataScanner

JWT_HS256 = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

CASES: list[tuple[str, str, str, bool]] = [
    # type, text, key, expected
    ("EMAIL_ADDRESS", "mail john.doe@example.com now", "", True),
    ("EMAIL_ADDRESS", "/users?e=jane%40example.org", "", True),
    ("EMAIL_ADDRESS", "logo@2x.png", "", False),
    ("PHONE_NUMBER", "call +44 20 7946 0958", "", True),
    ("PHONE_NUMBER", "call (212) 555-0123 today", "", True),
    ("PHONE_NUMBER", "build 2024-01-15 finished", "", False),
    ("US_SSN", "ssn 536-90-4399", "", True),
    ("US_SSN", "ssn 666-90-4399", "", False),
    ("US_SSN", "000-12-3456", "", False),
    ("US_SSN", "536904399", "customer.ssn", True),
    ("US_SSN", "order 536904399 shipped", "", False),
    ("US_ITIN", "itin 912-70-1234", "", True),
    ("US_ITIN", "itin 912-93-1234", "", False),
    ("UK_NINO", "NI AB123456C", "", True),
    ("UK_NINO", "NI GB123456C", "", False),
    ("CA_SIN", "130 692 544", "sin", True),
    ("CA_SIN", "130 692 545", "sin", False),
    ("IN_AADHAAR", "2341 2341 2346", "", True),
    ("IN_AADHAAR", "2341 2341 2345", "", False),
    ("IN_PAN", "pan ABCPE1234F", "", True),
    ("IN_PAN", "pan ABCQE1234F", "", False),
    ("BR_CPF", "cpf 390.533.447-05", "", True),
    ("BR_CPF", "cpf 390.533.447-06", "", False),
    ("BR_CNPJ", "16.727.230/0001-97", "", True),
    ("BR_CNPJ", "16.727.230/0001-98", "", False),
    ("ES_NIF", "dni 12345678Z", "", True),
    ("ES_NIF", "dni 12345678A", "", False),
    ("ES_NIE", "nie X1234567L", "", True),
    ("ES_NIE", "nie X1234567A", "", False),
    ("PASSPORT", "C03005988", "passport_number", True),
    ("PASSPORT", "C03005988", "order_number", False),
    ("DRIVER_LICENSE", "D1234567", "drivers_license", True),
    ("DATE_OF_BIRTH", "1984-07-21", "date_of_birth", True),
    ("DATE_OF_BIRTH", "1984-07-21", "created_at", False),
    ("DATE_OF_BIRTH", "1784-07-21", "dob", False),
    ("STREET_ADDRESS", "742 Evergreen Terrace", "shipping_address", True),
    ("STREET_ADDRESS", "10.1.2.3", "server.address", False),
    ("CREDIT_CARD", "card 4111 1111 1111 1111", "", True),
    ("CREDIT_CARD", "amex 378282246310005", "", True),
    ("CREDIT_CARD", "card 4111 1111 1111 1112", "", False),
    ("CREDIT_CARD", "id 9111111111111111", "", False),
    ("CARD_CVV", "123", "card.cvv", True),
    ("CARD_CVV", "123", "retries", False),
    ("CARD_EXPIRY", "09/27", "expiry", True),
    ("CARD_EXPIRY", "1700000000", "exp", False),
    ("IBAN_CODE", "iban DE89 3704 0044 0532 0130 00", "", True),
    ("IBAN_CODE", "iban DE89370400440532013001", "", False),
    ("SWIFT_CODE", "DEUTDEFF", "swift", True),
    ("SWIFT_CODE", "DEUTXXFF", "swift", False),
    ("ABA_ROUTING_NUMBER", "routing 011000015", "", True),
    ("ABA_ROUTING_NUMBER", "routing 011000016", "", False),
    ("US_BANK_NUMBER", "12345678901", "account_number", True),
    ("CRYPTO", "btc 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "", True),
    ("CRYPTO", "btc 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3", "", False),
    ("US_NPI", "npi 1245319599", "", True),
    ("US_NPI", "npi 1245319598", "", False),
    ("MEDICAL_LICENSE", "dea AB1234563", "", True),
    ("MEDICAL_LICENSE", "dea AB1234564", "", False),
    ("US_MBI", "mbi 1EG4TE5MK73", "", True),
    ("US_MBI", "mbi 1SG4TE5MK73", "", False),
    ("MEDICAL_RECORD_NUMBER", "MRN0012345", "patient.mrn", True),
    ("ICD10_CODE", "E11.9", "diagnosis_code", True),
    ("ICD10_CODE", "E11.9", "version", False),
    ("JWT", f"token {JWT_HS256}", "", True),
    ("JWT", "eyJhbGciOiJIUzI1NiJ9.eyJub3Rqc29u.xx", "", False),
    ("HTTP_BASIC_AUTH", "Authorization: Basic dXNlcjpwYXNzd29yZA==", "", True),
    ("HTTP_BASIC_AUTH", "Basic aGVsbG8gd29ybGQ=", "", False),
    ("BEARER_TOKEN", "Authorization: Bearer abcdef0123456789ABCDEF", "", True),
    ("PASSWORD", "s3cr3t-Pa55", "user.password", True),
    ("PASSWORD", "/login?user=bob&password=hunter22", "", True),
    ("PASSWORD", "********", "password", False),
    ("PASSWORD", "C03005988", "passport", False),
    ("PRIVATE_KEY", "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "", True),
    ("PRIVATE_KEY", "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", "", False),
    ("AWS_ACCESS_KEY_ID", "key AKIAZ7Q3LMNOPQRSTUV2", "", True),
    ("AWS_ACCESS_KEY_ID", "key AKIAIOSFODNN7EXAMPLE", "", False),
    ("AWS_SECRET_ACCESS_KEY", "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", "aws_secret_access_key", True),
    ("GCP_API_KEY", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "", True),
    ("GCP_SERVICE_ACCOUNT_KEY", '"private_key_id": "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c"', "", True),
    ("AZURE_CONNECTION_STRING", "AccountName=x;AccountKey=abcdEFGH1234ijklMNOP5678qrstUVWX==;", "", True),
    ("AZURE_SAS_TOKEN", "?sv=2022-11-02&sp=r&sig=abcdEFGH1234ijklMNOP5678qrstUVWXyz%3D", "", True),
    ("GITHUB_TOKEN", "ghp_" + "a" * 36, "", True),
    ("GITLAB_TOKEN", "glpat-abcdefghij0123456789", "", True),
    ("SLACK_TOKEN", "xoxb-123456789012-abcdefABCDEF", "", True),
    ("STRIPE_API_KEY", "sk_live_abcdefghijklmnop1234", "", True),
    ("STRIPE_API_KEY", "pk_live_abcdefghijklmnop1234", "", False),
    ("TWILIO_API_KEY", "SK0123456789abcdef0123456789abcdef", "", True),
    ("SENDGRID_API_KEY", "SG." + "a" * 22 + "." + "b" * 43, "", True),
    ("NPM_TOKEN", "npm_" + "A1" * 18, "", True),
    ("DB_CONNECTION_STRING", "postgres://app:Sup3rS3cret@db:5432/shop", "", True),
    ("DB_CONNECTION_STRING", "postgres://db:5432/shop", "", False),
    ("URL_CREDENTIALS", "https://bob:hunter22@git.example.com/x.git", "", True),
    ("GENERIC_SECRET", "q8Zr2Lw9Xy7Tb4Nc1Vm6", "client_secret", True),
    ("GENERIC_SECRET", "aaaaaaaaaaaaaaaaaaaa", "client_secret", False),
    ("GENERIC_SECRET", "q8Zr2Lw9Xy7Tb4Nc1Vm6", "author", False),
    ("IP_ADDRESS", "from 8.8.8.8", "", True),
    ("IP_ADDRESS", "from 10.1.2.3", "", False),
    ("IP_ADDRESS", "v1.2.3.4", "", False),
    ("IP_ADDRESS", "peer 2001:4860:4860::8888", "", True),
    ("PRIVATE_IP_ADDRESS", "from 10.1.2.3", "", True),
    ("MAC_ADDRESS", "mac 00:1A:2B:3C:4D:5E", "", True),
    ("MAC_ADDRESS", "at 12:30:45", "", False),
    ("IMEI", "imei 490154203237518", "", True),
    ("IMEI", "imei 490154203237519", "", False),
]


@pytest.fixture(scope="module")
def scanner() -> SensitiveDataScanner:
    return SensitiveDataScanner(secret=b"s" * 32)


@pytest.mark.parametrize(("typ", "text", "key", "expected"), CASES)
def test_recognizer(scanner: SensitiveDataScanner, typ: str, text: str, key: str, expected: bool) -> None:
    found = {m.type for m in scanner.scan(text, key)}
    assert (typ in found) is expected, (typ, text, key, found)


def test_at_least_40_types_each_with_a_case() -> None:
    types = {cls.ENTITY for cls in ALL}
    assert len(types) >= 40
    assert types <= {c[0] for c in CASES if c[3]}


@pytest.mark.parametrize("engine", ["re2", "re"])
def test_engines_agree(engine: str, scanner: SensitiveDataScanner) -> None:
    other = SensitiveDataScanner(secret=b"s" * 32, engine=engine)
    for _typ, text, key, _exp in CASES:
        assert other.scan(text, key) == scanner.scan(text, key), text


def test_ipv4_scope_answers_as_the_ipaddress_library() -> None:
    """The public/private split of IPv4 addresses is worked out from integers (a fast
    path): it must agree with ``ipaddress`` at every edge of its special networks, on
    random addresses, and refuse what the library refuses."""
    import ipaddress
    import random

    from enrichers.sensitive.recognizers import network

    assert network._V4_RULES is not None  # the fast path is in use on this Python

    def expected(text: str) -> tuple[bool, bool] | None:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            return None
        return ip.is_global, ip.is_unspecified

    rnd = random.Random(7)
    texts = [str(ipaddress.IPv4Address(rnd.getrandbits(32))) for _ in range(5000)]
    specials = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
                "192.0.0.0/24", "192.0.0.9/32", "192.0.0.170/31", "192.0.2.0/24", "192.168.0.0/16",
                "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32"]
    for net in map(ipaddress.IPv4Network, specials):
        for edge in (int(net.network_address), int(net.broadcast_address)):
            for d in (-1, 0, 1):
                if 0 <= edge + d < 1 << 32:
                    texts.append(str(ipaddress.IPv4Address(edge + d)))
    texts += ["01.2.3.4", "1.2.3.04", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4 ", "\uff11.2.3.4",
              "1.2.3.\u0664", "1.2.3.4\x00", "::ffff:1.2.3.4", "2001:db8::1", "::1"]
    for t in texts:
        network._scope.cache_clear()
        assert network._scope(t) == expected(t), t
