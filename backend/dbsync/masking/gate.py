"""The gate: columns whose names, read with their types, keys and tables, say personal data,
which a rules file must cover.

A name is read as words (snake_case, camelCase and kebab-case alike: `unconfirmedEmail`,
`unconfirmed_email`), and each kind of personal data below names the words that announce it.
What the column is decides as much as what it is called: a foreign key is never a name, an email
or a tax id (it points at a row elsewhere); a flag, a count or a timestamp is never an email
(`email_verified`, `phone_count`, `email_confirmed_at`) — only birth dates are personal in a date
type; and `name`, `title` and profile text are personal only on a table about people, which its
own name or its columns say (users, customers, members, …; or a table with an email, a user name
or a password). A bare `token`, `key` or `secret` that the schema repeats on many tables is its
identifier scheme (public ids in URLs), not a credential. Listed in docs/masking.md; the rules
file's `personal_data:` adds patterns and `not_personal:` clears a column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Tables about people, by a word of their name.
PEOPLE_TABLES = frozenset({
    "user", "users", "customer", "customers", "member", "members", "person", "persons", "people", "profile",
    "profiles", "contact", "contacts", "author", "authors", "employee", "employees", "artist", "artists", "patient",
    "patients", "student", "students", "teacher", "teachers", "staff", "client", "clients", "family", "families",
    "household", "households", "applicant", "applicants", "candidate", "candidates", "guest", "guests",
    "subscriber", "subscribers", "recipient", "recipients", "participant", "participants", "attendee", "attendees",
    "volunteer", "volunteers", "invitee", "invitees", "committer", "committers", "speaker", "speakers", "social",
    "owner", "owners", "buyer", "buyers", "seller", "sellers", "donor", "donors", "driver", "drivers",
})
# The account table itself, where frameworks serialize OTP secrets and linked accounts' tokens.
ACCOUNT_TABLES = frozenset({"users", "accounts", "members", "profiles", "user", "account", "member", "profile"})
# Tables whose bare `token`, `key` or `code` is a credential.
AUTH_TABLE_WORDS = frozenset({
    "api", "oauth", "token", "tokens", "grant", "grants", "session", "sessions", "password", "passwords", "reset",
    "resets", "invite", "invites", "invitation", "invitations", "credential", "credentials", "login", "logins",
    "auth", "authentication", "verification", "verifications", "confirmation", "confirmations", "otp", "device",
    "devices", "secret", "secrets", "access", "webauthn", "recovery",
})
INVITE_TABLE_WORDS = frozenset({"invite", "invites", "invitation", "invitations", "verification", "verifications",
                                "confirmation", "confirmations", "reset", "resets", "otp", "recovery"})
# A last word that makes the column about the data, not the data (email_settings, phone_count).
NOT_DATA_LAST = frozenset({
    "count", "counts", "counter", "enabled", "disabled", "verified", "valid", "validated", "confirmed", "required",
    "sent", "status", "state", "type", "kind", "format", "template", "templates", "frequency", "setting", "settings",
    "preference", "preferences", "provider", "visibility", "visible", "length", "size", "version", "limit", "limits",
    "scope", "scopes", "strategy", "method", "policy", "mode", "level", "attempts", "changed", "regex",
    "expires", "expiry", "expiration", "interval", "display", "label", "prefix", "domain", "domains", "host",
    "hostname", "iv",
})
# Person-specific names, personal on any table.
PERSON_NAMES = frozenset({
    "firstname", "first_name", "lastname", "last_name", "surname", "surnames", "forename", "given_name", "family_name",
    "middle_name", "maiden_name", "full_name", "fullname", "legal_name", "username", "user_name", "usernames",
    "nickname", "nick_name", "screen_name", "contact_name", "author_name", "committer_name", "owner_name",
    "billing_name", "shipping_name", "holder_name", "cardholder_name", "card_holder_name", "device_name",
    "real_name", "birth_name", "login_name", "preferred_name", "original_name", "desired_name",
})
PEOPLE_NAMES = frozenset({"name", "names", "other_names", "display_name", "title", "display_title", "login"})
PROFILE_TEXT = frozenset({
    "bio", "biography", "about", "about_me", "description", "location", "website", "web_site", "homepage",
    "home_page", "url", "blog", "company", "occupation", "job_title", "signature", "memo", "note", "headline",
    "tagline", "pronouns", "gender", "sex", "nationality", "religion", "ethnicity",
})
CREDENTIAL_WORDS = frozenset({
    "password", "passwords", "passwd", "pass_crypt", "pass_salt", "salt", "bcrypt", "scrypt", "argon2", "pbkdf2",
    "secret", "secrets", "token", "tokens", "otp", "totp", "hotp", "mfa", "twofa", "backup_codes", "backup_code",
    "recovery_codes", "recovery_code", "api_key", "apikey", "hmac_key", "private_key", "signing_key", "secret_key",
    "access_key", "session_id", "session_key", "auth_key", "client_secret", "encrypted_password", "crypted_password",
    "encrypted",  # what someone thought worth encrypting, with the key beside it on staging
})
CONTACT_WORDS = frozenset({"email", "emails", "mail", "e_mail", "phone", "phones", "mobile", "telephone", "tel",
                           "fax", "cellphone", "cell_phone", "msisdn", "whatsapp"})
IP_WORDS = frozenset({"ip", "ips", "ip_addr", "ip_address", "ip_addresses", "remote_addr", "x_forwarded_for"})
ADDRESS_STRONG = frozenset({
    "street", "street_address", "address_line", "address_line1", "address_line2", "address_line3", "address1",
    "address2", "address3", "zip", "zipcode", "zip_code", "postcode", "post_code", "postal_code", "postalcode",
    "billing_address", "shipping_address", "home_address", "postal_address", "mailing_address", "house_number",
})
ADDRESS_WEAK = frozenset({"address", "line1", "line2", "line3", "city", "locality", "town", "suburb"})
BIRTH_WORDS = frozenset({"birth", "birthdate", "birthday", "birth_date", "date_of_birth", "dob", "born",
                         "birth_year", "birthyear", "birthplace"})
ID_WORDS = frozenset({
    "ssn", "social_security", "social_security_number", "national_id", "national_insurance", "nino", "nin",
    "passport", "passport_number", "tax_id", "tin", "tax_number", "tax_identification_number", "vat_number",
    "vat_id", "legal_number", "registration_number", "company_number", "driver_license", "drivers_license",
    "driving_licence", "driving_license", "id_card", "id_card_number", "id_number", "personnummer",
})
PAYMENT_WORDS = frozenset({"card_number", "credit_card", "credit_card_number", "cc_number", "pan", "cvv", "cvc",
                           "iban", "bic", "swift", "account_number", "bank_account", "routing_number", "sort_code"})
CODES = frozenset({"backup_codes", "backup_code", "recovery_codes", "recovery_code", "otp"})
ACCOUNT_IDS = frozenset({"uid", "auth_uid", "provider_uid", "oauth_uid", "openid", "external_uid", "identity_url"})
HOME_WORDS = frozenset({"lat", "lon", "lng", "latitude", "longitude", "location", "tile", "address", "geo",
                        "coordinates", "position", "point"})
LOCATION_WORDS = frozenset({"lat", "lon", "lng", "latitude", "longitude", "geo", "coordinates"})
# A table with one of these columns is about people, whatever its name.
IDENTITY_COLUMNS = frozenset({"email", "email_address", "username", "user_name", "first_name", "firstname",
                              "last_name", "lastname", "phone", "mobile", "password", "password_digest",
                              "encrypted_password", "date_of_birth", "birth_date"})
SERIALIZED = frozenset({"settings", "preferences", "prefs", "options", "data", "metadata"})
# Names so short that only the whole column name counts.
WHOLE_ONLY = frozenset({"pan", "tin", "nin", "nino", "tel", "bic", "cvv", "cvc", "dob", "born", "swift", "mail",
                        "salt", "uid", "sex", "about", "memo", "note", "url", "title", "login"})


@dataclass(frozen=True)
class Column:
    """What the gate reads of one column: its table's name and column names, its type, its role."""

    table: str
    name: str
    type: str  # format_type()
    foreign_key: bool = False
    table_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Flag:
    kind: str  # what the column holds, e.g. "contact details"
    pattern: str  # what in its name said so, e.g. "email"

    def __str__(self) -> str:
        return f"{self.kind}: {self.pattern}"


def words(name: str) -> list[str]:
    """The words of a name: unconfirmedEmail, unconfirmed_email and unconfirmed-email alike."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name))
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def _phrases(ws: list[str]) -> list[str]:
    """Every run of one to four consecutive words, joined by `_`, longest first."""
    return [ "_".join(ws[i:i + n]) for n in (4, 3, 2, 1) for i in range(len(ws) - n + 1)]


def type_class(column_type: str) -> str:
    """flag, number, time, ip or text (anything else that holds text-like values: json, uuid, enums)."""
    base = re.sub(r"\(.*?\)", "", column_type).removesuffix("[]").strip()
    if base == "boolean":
        return "flag"
    if base in ("smallint", "integer", "bigint", "numeric", "real", "double precision", "money", "decimal"):
        return "number"
    if base == "date" or base.startswith(("timestamp", "time ", "interval")) or base == "time":
        return "time"
    if base in ("inet", "cidr"):
        return "ip"
    return "text"


class _Table:
    """The facts about a column's table the kinds depend on."""

    def __init__(self, name: str, columns: Iterable[str]):
        self.words = set(words(name))
        self.name = name.lower()
        cols = [words(c) for c in columns]
        self.identity = any("_".join(w) in IDENTITY_COLUMNS for w in cols)
        self.about_people = bool(self.words & PEOPLE_TABLES) or self.identity
        self.auth = bool(self.words & AUTH_TABLE_WORDS)
        self.invite = bool(self.words & INVITE_TABLE_WORDS)
        self.addressed = any(set(_phrases(w)) & ADDRESS_STRONG for w in cols) or "addresses" in self.words
        self.email_table = bool(self.words & {"email", "emails", "email_addresses"}) or "email" in self.name


def _match(vocabulary: frozenset[str], phrases: list[str], whole: str) -> str | None:
    for phrase in phrases:
        if phrase in vocabulary and (phrase not in WHOLE_ONLY or phrase == whole):
            return phrase
    return None


def flag(column: Column, extra: Sequence[re.Pattern] = (), conventions: frozenset[str] = frozenset()) -> Flag | None:
    """Why the column's name, type and role say personal data; None when they do not."""
    for pattern in extra:
        if pattern.search(column.name):
            return Flag("personal_data pattern", pattern.pattern)
    ws = words(column.name)
    if not ws or column.foreign_key:
        return None
    whole, phrases, cls = "_".join(ws), _phrases(ws), type_class(column.type)
    table = _Table(column.table, column.table_columns)
    if (hit := _match(BIRTH_WORDS, phrases, whole)) and cls != "flag":
        return Flag("birth dates", hit)
    if cls == "text" and whole in SERIALIZED and table.name in ACCOUNT_TABLES:
        return Flag("credentials and tokens", f"{whole} (serialized, on the account table)")
    if cls in ("flag", "time") or ws[-1] in NOT_DATA_LAST or ws[-1] in ("at", "on"):
        return None
    if cls == "ip":
        return Flag("IP addresses", "an inet column")
    if cls == "text" and (hit := _match(IP_WORDS, phrases, whole)):
        return Flag("IP addresses", hit)
    return _credential(ws, whole, phrases, cls, table, conventions) or _identity(ws, whole, phrases, cls, table)


def _credential(ws, whole, phrases, cls, table: _Table, conventions) -> Flag | None:
    if ws[-1] in ("id", "ids") and whole != "session_id" or ws[-1] in ("url", "uri", "path", "name"):
        return None  # a reference to a secret, or where it is used: not the secret
    hit = _match(CREDENTIAL_WORDS, phrases, whole)
    if cls == "number" and hit not in CODES:
        return None  # a duration, a size or a count about secrets; only backup codes are numbers
    if hit and whole in conventions:
        return None  # the schema's identifier scheme
    if hit is None and whole == "key" and table.auth and "key" not in conventions:
        hit = "key"
    if hit is None and whole == "code" and table.invite:
        hit = "code (on an invitation or verification table)"
    if hit is None and whole in ("digest", "hash", "crypted", "encrypted") and table.auth:
        hit = whole
    return Flag("credentials and tokens", hit) if hit else None


def _identity(ws, whole, phrases, cls, table: _Table) -> Flag | None:  # noqa: C901 - one test per kind
    text = cls == "text"
    if hit := _match(ID_WORDS, phrases, whole):
        return Flag("government and tax ids", hit)
    if hit := _match(PAYMENT_WORDS, phrases, whole):
        return Flag("payment data", hit)
    if "home" in ws and (hit := _match(HOME_WORDS, phrases, whole)):
        return Flag("location", f"home {hit}")
    if table.about_people and _match(LOCATION_WORDS, phrases, whole):
        return Flag("location", f"{whole} (on a table about people)")
    if ws[-1] in ("id", "ids", "type", "types"):
        return None  # a reference or a category is no name, email or address
    if not text:
        return _postal(phrases, whole, cls, table)
    if hit := _match(CONTACT_WORDS, phrases, whole):
        return Flag("contact details", hit)
    if table.email_table and whole in ("address", "normalized_address", "addresses"):
        return Flag("contact details", f"{whole} (on a table of email addresses)")
    if hit := _match(PERSON_NAMES, phrases, whole):
        return Flag("people's names", hit)
    if table.about_people and whole in PEOPLE_NAMES:
        return Flag("people's names", f"{whole} (on a table about people)")
    if table.about_people and whole in PROFILE_TEXT:
        return Flag("profile text", f"{whole} (on a table about people)")
    if table.about_people and (hit := _match(ACCOUNT_IDS, phrases, whole)):
        return Flag("account identifiers", hit)
    return _postal(phrases, whole, cls, table)


def _postal(phrases, whole, cls, table: _Table) -> Flag | None:
    if cls not in ("text", "number"):
        return None
    if hit := _match(ADDRESS_STRONG, phrases, whole):
        return Flag("postal addresses", hit)
    if cls == "text" and (table.addressed or table.about_people) and (hit := _match(ADDRESS_WEAK, phrases, whole)):
        return Flag("postal addresses", f"{hit} (with a street address or on a table about people)")
    return None


def conventions(tables: Iterable[Iterable[str]]) -> frozenset[str]:
    """Bare `token`, `key` and `secret` columns the schema repeats on many of its tables (at least
    5 and a fifth of them): an identifier scheme, not credentials."""
    tables = [set(t) for t in tables]
    return frozenset(name for name in ("token", "key", "secret")
                     if (n := sum(name in t for t in tables)) >= 5 and n * 5 >= len(tables))
