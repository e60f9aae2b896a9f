"""Every predefined recognizer, one file per type or per small family."""

from __future__ import annotations

from enrichers.sensitive.recognizer import Recognizer
from enrichers.sensitive.recognizers.cloud import (
    AwsAccessKeyIdRecognizer,
    AwsSecretAccessKeyRecognizer,
    AzureConnectionStringRecognizer,
    AzureSasTokenRecognizer,
    GcpApiKeyRecognizer,
    GcpServiceAccountKeyRecognizer,
)
from enrichers.sensitive.recognizers.credentials import (
    BearerTokenRecognizer,
    DbConnectionStringRecognizer,
    GenericSecretRecognizer,
    HttpBasicAuthRecognizer,
    JwtRecognizer,
    PasswordRecognizer,
    PrivateKeyRecognizer,
    UrlCredentialsRecognizer,
)
from enrichers.sensitive.recognizers.financial import (
    AbaRoutingRecognizer,
    CardCvvRecognizer,
    CardExpiryRecognizer,
    CreditCardRecognizer,
    CryptoRecognizer,
    IbanRecognizer,
    SwiftCodeRecognizer,
    UsBankNumberRecognizer,
)
from enrichers.sensitive.recognizers.health import (
    DeaNumberRecognizer,
    Icd10Recognizer,
    MedicalRecordNumberRecognizer,
    UsMbiRecognizer,
    UsNpiRecognizer,
)
from enrichers.sensitive.recognizers.national_ids import (
    BrCnpjRecognizer,
    BrCpfRecognizer,
    CaSinRecognizer,
    EsNieRecognizer,
    EsNifRecognizer,
    InAadhaarRecognizer,
    InPanRecognizer,
    UkNinoRecognizer,
)
from enrichers.sensitive.recognizers.network import (
    ImeiRecognizer,
    IpAddressRecognizer,
    MacAddressRecognizer,
    PrivateIpAddressRecognizer,
)
from enrichers.sensitive.recognizers.personal import (
    DateOfBirthRecognizer,
    DriverLicenseRecognizer,
    EmailRecognizer,
    PassportRecognizer,
    PhoneRecognizer,
    StreetAddressRecognizer,
)
from enrichers.sensitive.recognizers.us_ids import UsItinRecognizer, UsSsnRecognizer
from enrichers.sensitive.recognizers.vendor_tokens import (
    GithubTokenRecognizer,
    GitlabTokenRecognizer,
    NpmTokenRecognizer,
    SendgridApiKeyRecognizer,
    SlackTokenRecognizer,
    StripeApiKeyRecognizer,
    TwilioApiKeyRecognizer,
)

ALL: tuple[type[Recognizer], ...] = (
    # personal
    EmailRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
    UsItinRecognizer,
    UkNinoRecognizer,
    CaSinRecognizer,
    InAadhaarRecognizer,
    InPanRecognizer,
    BrCpfRecognizer,
    BrCnpjRecognizer,
    EsNifRecognizer,
    EsNieRecognizer,
    PassportRecognizer,
    DriverLicenseRecognizer,
    DateOfBirthRecognizer,
    StreetAddressRecognizer,
    # financial
    CreditCardRecognizer,
    CardCvvRecognizer,
    CardExpiryRecognizer,
    IbanRecognizer,
    SwiftCodeRecognizer,
    AbaRoutingRecognizer,
    UsBankNumberRecognizer,
    CryptoRecognizer,
    # health
    UsNpiRecognizer,
    DeaNumberRecognizer,
    UsMbiRecognizer,
    MedicalRecordNumberRecognizer,
    Icd10Recognizer,
    # credentials
    JwtRecognizer,
    HttpBasicAuthRecognizer,
    BearerTokenRecognizer,
    PasswordRecognizer,
    PrivateKeyRecognizer,
    AwsAccessKeyIdRecognizer,
    AwsSecretAccessKeyRecognizer,
    GcpApiKeyRecognizer,
    GcpServiceAccountKeyRecognizer,
    AzureConnectionStringRecognizer,
    AzureSasTokenRecognizer,
    GithubTokenRecognizer,
    GitlabTokenRecognizer,
    SlackTokenRecognizer,
    StripeApiKeyRecognizer,
    TwilioApiKeyRecognizer,
    SendgridApiKeyRecognizer,
    NpmTokenRecognizer,
    DbConnectionStringRecognizer,
    UrlCredentialsRecognizer,
    GenericSecretRecognizer,
    # network and device
    IpAddressRecognizer,
    PrivateIpAddressRecognizer,
    MacAddressRecognizer,
    ImeiRecognizer,
)

__all__ = ["ALL"]
