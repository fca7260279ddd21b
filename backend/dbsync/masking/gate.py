"""The gate: column names that plainly say personal data, which a rules file must cover.

A pattern matches a column's whole name, case-insensitively, with `_`, `-` or nothing between
words (firstName, first_name, first-name). The rules file's `personal_data:` adds patterns of
its own (regular expressions, searched in the name). Listed in docs/masking.md.
"""

from __future__ import annotations

import re

# (what it is, the words) — each word list is one pattern: the whole name, in any case, the
# words joined by `_`, `-` or nothing.
PERSONAL_DATA: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("contact details", ("e?mail", "e?mail_address", "phone", "phone_number", "mobile", "mobile_phone",
                         "telephone", "tel", "fax", "cell_phone")),
    ("people's names", ("name", "first_name", "last_name", "middle_name", "full_name", "given_name",
                        "family_name", "surname", "forename", "display_name", "maiden_name", "nickname",
                        "user_name", "username", "contact_name")),
    ("postal addresses", ("address", "address_line_?[0-9]?", "street", "street_address", "postcode",
                          "post_code", "postal_code", "zip", "zip_code", "zipcode", "billing_address",
                          "shipping_address", "home_address")),
    ("birth dates", ("birth_?date", "date_of_birth", "dob", "birthday", "born", "birth_year")),
    ("government and tax ids", ("ssn", "social_security_number", "national_id", "national_insurance_number",
                                "nino?", "passport", "passport_number", "tax_id", "tin", "vat_number",
                                "driver_license", "drivers_license", "driving_licen[cs]e", "id_card_number")),
    ("payment data", ("card_number", "credit_card", "credit_card_number", "cc_number", "pan", "cvv", "cvc",
                      "iban", "bic", "account_number", "bank_account", "routing_number", "sort_code")),
    ("IP addresses", ("ip", "ip_address", "ip_addr", "last_ip", "remote_addr", "remote_ip", "client_ip",
                      "last_login_ip", "current_sign_in_ip", "last_sign_in_ip")),
    ("credentials and tokens", ("password", "password_hash", "passwd", "encrypted_password", "secret",
                                "api_key", "token", "access_token", "refresh_token", "auth_token", "session_token",
                                "reset_password_token", "otp_secret", "totp_secret", "private_key")),
)


def _pattern(words: str) -> re.Pattern:
    parts = words.split("_")
    return re.compile("^" + "[_-]?".join(parts) + "$", re.IGNORECASE)


_BUILT_IN = [(what, _pattern(w)) for what, group in PERSONAL_DATA for w in group]


def personal_data_kind(column: str, extra: list[re.Pattern] = ()) -> str | None:
    """What kind of personal data the column's name says it holds; None when it says none."""
    for what, pattern in _BUILT_IN:
        if pattern.match(column):
            return what
    for pattern in extra:
        if pattern.search(column):
            return f"personal_data pattern {pattern.pattern!r}"
    return None
