"""PII redaction: replace personal data and secrets in training text with typed placeholders.

    PiiRedactor(types).redact(text) -> (text with <EMAIL>, <PHONE>, ... placeholders, Counter of replacements)
    redact_pii(text)                -> the same for every type, through one shared redactor

Precision matters as much as recall: a training set where dates, order numbers and versions turned into
<PHONE> or <IP_ADDRESS> teaches the model nonsense. So every pattern is narrow, and most matches are checked
before they are replaced: Luhn and the card-network prefix for cards, mod-97 and the country's length for
IBANs, octet ranges and the words in front ("version 1.2.3.4" stays) for IPs, valid areas for SSNs, and
"order"/"ticket"/"invoice" in front of a long number keeps it. Placeholders hold no digits and no '@',
so no pattern matches one, and `redact` repeats until nothing changes: redacting twice changes nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

PII_TYPES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "SSN", "SECRET", "URL_CREDENTIALS")

# Returns the span (absolute offsets) of the match to replace, or None to leave the match as it is.
Check = Callable[[re.Match[str]], tuple[int, int] | None]


@dataclass(frozen=True, slots=True)
class _Pattern:
    pii_type: str
    regex: re.Pattern[str]
    check: Check
    needs_digit: bool = False    # skip the regex on text without digits (most prose rows)
    hints: tuple[str, ...] = ()  # skip it unless the lower-cased text contains one of these
    gate: re.Pattern[str] | None = None  # skip it unless this cheap regex finds something in the lower-cased text


def _c(pattern: str, flags: int = 0) -> re.Pattern[str]:
    # ASCII: \d and \w must not match Arabic-Indic digits or letters of other scripts in these patterns.
    return re.compile(pattern, re.ASCII | flags)


def _span(group: str = "pii") -> Check:
    def check(m: re.Match[str]) -> tuple[int, int]:
        return m.span(group)
    return check


_DIGIT = _c(r"\d")
_DIGITS = _c(r"\d+")
_NON_DIGITS = _c(r"\D+")


def _has_digit(s: str) -> bool:
    return _DIGIT.search(s) is not None

# --- context: the words in front of a number decide what it is ---------------------------------------

# A long number right after these words is a reference, not a card or phone, even when it passes Luhn.
_REFERENCE_BEFORE = _c(
    r"\b(?:order|purchase|invoice|inv|ticket|tracking|reference|ref|confirmation|booking|shipment|transaction|txn"
    r"|account|acct|policy|claim|sku|serial|isbn|id)"
    r"(?:[\s#:=()-]|\b(?:no|nr|num|number|id|is|was|of|for|the|my|your|code)\b\.?)*$"
)
# A dotted quad right after these words, or a requirement's `>=`/`==`, is a version, not an IP address.
_VERSION_BEFORE = _c(
    r"[=<>~!]=\s*$|\b(?:version|ver|v|release|rel|build|python|py|node|nodejs|npm|pip|java|jdk|ruby|golang|go|rust|rustc|php|"
    r"gcc|clang|cuda|cudnn|torch|pytorch|tensorflow|firmware|fw|kernel|ios|android|macos|windows|chrome|firefox|"
    r"safari|sdk|api|app|package|pkg|library|lib|tag|rev|revision|patch|update|upgrade|upgraded|downgrade|"
    r"downgraded|bump|bumped)(?:\s+(?:is|was|to|from|of|at))?[\s:=@v-]*$"
)


def _preceded_by(words: re.Pattern[str], m: re.Match[str], window: int = 48) -> bool:
    before = m.string[max(0, m.start() - window):m.start()].lower()
    return words.search(before) is not None


# --- credit cards -------------------------------------------------------------------------------------

# (lowest prefix, highest prefix, card lengths): the networks named in the issuer ranges (ISO/IEC 7812).
_CARD_NETWORKS = (
    ("4", "4", (13, 16, 19)),                                 # Visa
    ("51", "55", (16,)), ("2221", "2720", (16,)),             # Mastercard
    ("34", "34", (15,)), ("37", "37", (15,)),                 # American Express
    ("6011", "6011", (16, 17, 18, 19)), ("644", "649", (16, 17, 18, 19)), ("65", "65", (16, 17, 18, 19)),  # Discover
    ("3528", "3589", (16, 17, 18, 19)),                       # JCB
    ("300", "305", (14, 15, 16, 17, 18, 19)), ("36", "36", (14, 15, 16, 17, 18, 19)),  # Diners Club
    ("38", "38", (14, 15, 16, 17, 18, 19)),
)


def _card_network(digits: str) -> bool:
    return any(lo <= digits[:len(lo)] <= hi and len(digits) in lengths for lo, hi, lengths in _CARD_NETWORKS)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> tuple[int, int] | None:
    digits = _NON_DIGITS.sub("", m.group())
    if not (_card_network(digits) and luhn_valid(digits)) or _preceded_by(_REFERENCE_BEFORE, m):
        return None
    return m.span()


# --- IBAN -----------------------------------------------------------------------------------------------

_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def iban_valid(iban: str) -> bool:
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _iban(m: re.Match[str]) -> tuple[int, int] | None:
    # The regex may have taken a following word of four capitals ("... 7034 THEN") as one more group:
    # drop trailing space-separated groups until the checksum holds.
    groups = m.group().split(" ")
    for n in range(len(groups), 0, -1):
        if iban_valid("".join(groups[:n])):
            return m.start(), m.start() + len(" ".join(groups[:n]))
    return None


# --- email ----------------------------------------------------------------------------------------------------

_URL_USER_BEFORE = _c(r"//[^\s/@:]*:?$")


def _email(m: re.Match[str]) -> tuple[int, int] | None:
    # `https://jane@host/` and `ftp://u:pw@host/` carry a URL's user (and password), not an address.
    return None if _preceded_by(_URL_USER_BEFORE, m, window=64) else m.span()


# --- IP addresses ---------------------------------------------------------------------------------------

def _names_no_one(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # 127.0.0.1, 0.0.0.0, multicast groups and netmasks (255.255.255.0, ffff:ffff::) are the same on every
    # machine; tutorials and configs are full of them.
    return address.is_loopback or address.is_unspecified or address.is_multicast or address.is_reserved


_CIDR_SUFFIX = _c(r"/\d{1,2}\b")


def _ipv4(m: re.Match[str]) -> tuple[int, int] | None:
    if _names_no_one(ipaddress.IPv4Address(m.group())) or _preceded_by(_VERSION_BEFORE, m, window=32):
        return None
    if _CIDR_SUFFIX.match(m.string, m.end()):
        return None  # 10.0.0.0/8 is a network range in a config or firewall rule, not someone's address
    return m.span()


def _ipv6(m: re.Match[str]) -> tuple[int, int] | None:
    text = m.group()
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    if _names_no_one(address):
        return None
    if "::" in text:
        # Compressed forms collide with code (`a[1::2]`, `Foo::Bar`): ask for a digit and a full 4-hex group.
        groups = [g for g in text.split(":") if g]
        if not (_has_digit(text) and len(groups) >= 2 and any(len(g) == 4 for g in groups)):
            return None
    return m.span()


# --- phones -------------------------------------------------------------------------------------------------

def _phone(min_digits: int, max_digits: int, may_be_reference: bool = True) -> Check:
    def check(m: re.Match[str]) -> tuple[int, int] | None:
        # Too many digits: a run of numbers (a table row, a tracking number in groups), not one phone.
        count = sum(len(run) for run in _DIGITS.findall(m.group()))
        if not min_digits <= count <= max_digits:
            return None
        if may_be_reference and _preceded_by(_REFERENCE_BEFORE, m):
            return None  # "ticket 030 1234567"; a number with +country code is never a reference
        return m.span()
    return check


# --- secrets ------------------------------------------------------------------------------------------------

# Values that name a type, a placeholder or nothing: `password: str`, `token=None`, `api_key=YOUR_API_KEY`.
_NOT_A_SECRET = {"none", "null", "nil", "true", "false", "undefined", "empty", "str", "string", "bytes", "int",
                 "optional", "required", "redacted", "hidden", "secret", "password", "token", "xxx", "..."}
_IDENTIFIER = _c(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_CONSTANT_NAME = _c(r"[A-Z_]+")  # TOKEN, MY_API_TOKEN: a name standing in for the value
_NAME_OF_A_SECRET = _c(r"(?:\w+_)?(?i:key|secret|token|password|passwd|pwd)|\w*[a-z](?:Key|Secret|Token|Password)")
# A tokenizer's special tokens: pad_token="[PAD]", bos_token="__start__", eos_token="<|endoftext|>".
_SPECIAL_TOKEN = _c(r"\[\w+\]|__\w+__|\|\w+\|")
_SNAKE_CASE_NAME = _c(r"[a-z]+(?:_[a-z]+)+")  # "n_token": "vocab_size" maps one setting to another


def _placeholder_value(value: str) -> bool:
    lowered = value.lower()
    if len(value) < 4 or lowered in _NOT_A_SECRET or lowered.startswith(("your", "<", "{", "$", "%", "*", "xxxx")):
        return True  # includes pad_token="0", token=None, api_key=<SECRET>
    if "..." in value:
        return True  # elided in documentation: api_key="sk-..."
    # A name, not a value: `TOKEN`, `client_secret='client_secret'`, `mask2_token=mask2_token`.
    return any(r.fullmatch(value) is not None for r in (_CONSTANT_NAME, _NAME_OF_A_SECRET, _SPECIAL_TOKEN))


def _token_with_digit(m: re.Match[str]) -> tuple[int, int] | None:
    # Real keys are random: one without a digit is a slug or prose ("sk-this-is-my-branch-name").
    return m.span("pii") if _has_digit(m.group("pii")) else None


def _bearer(m: re.Match[str]) -> tuple[int, int] | None:
    # "Bearer authentication" is prose; a token has digits, or stands in an Authorization header.
    token = m.group("pii")
    if _placeholder_value(token):
        return None
    if _has_digit(token) or "authorization" in m.string[max(0, m.start() - 32):m.start()].lower():
        return m.span("pii")
    return None


def _assigned_secret(m: re.Match[str]) -> tuple[int, int] | None:
    if m.group("quoted") is not None:
        value, (start, end) = m.group("quoted"), m.span("quoted")
    else:  # a bare value ends before a sentence's full stop: "... use token=abc123."
        value = m.group("bare").rstrip(".")
        start, end = m.start("bare"), m.start("bare") + len(value)
    if _placeholder_value(value):
        return None
    if m.group("quoted") is not None:
        return None if " " in value or _SNAKE_CASE_NAME.fullmatch(value) else (start, end)
    if m.string.startswith(("(", "["), end):
        return None  # code: `token = Tokenizer(config)`, `access_token=data["access_token"]`
    if ":" in m.group("op") and not (len(value) >= 6 and _has_digit(value)):
        return None  # "password: click the link" in prose; YAML secrets like "s3cr3t-42" still go
    code_like = "_" in value or "." in value or " " in m.group("op")
    if code_like and not _has_digit(value) and _IDENTIFIER.fullmatch(value):
        return None  # code: `password = new_password`, `token = request.token`
    return start, end


# --- the patterns, in the order they run --------------------------------------------------------------------
# Order matters: credentials inside URLs before emails (pass@host looks like an address), secrets before the
# digit patterns (keys contain digit runs), IBANs and cards before phones (their groups look like phones).

_URL_CREDENTIALS = r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://(?P<pii>(?![{$])[^\s/@:<>\"'{}$]*:(?![{$%])[^\s/@<>\"'{}]+)@"
_PRIVATE_KEY = r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.{1,8000}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----"
_BASIC_AUTH = r"(?i:\bauthorization)[\"']?[ \t]*[:=][ \t]*[\"']?(?i:basic)[ \t]+(?P<pii>[A-Za-z0-9+/]{8,}=*)"
_SECRET_KEYS = (r"api[_-]?key|api[_-]?secret|secret[_-]?key|client[_-]?secret|access[_-]?key|access[_-]?token|"
                r"auth[_-]?token|refresh[_-]?token|private[_-]?key|secret|token|password|passwd|pwd")
# `NAME_API_KEY=value`, `"password": "value"`, `?token=value`: the value goes, the name stays.
_ASSIGNED_SECRET = (rf"(?<![\w.-])[\w.-]*?(?i:{_SECRET_KEYS})[\"']?(?P<op>[ \t]*[:=](?![=:])[ \t]*)"
                    r"(?:(?P<q>[\"'])(?P<quoted>[^\"'\n]{1,200}?)(?P=q)|(?P<bare>(?:[^\s\"'`<>{}\[\](),;&]|&(?!\w+=)){1,200}))")
_EMAIL = (r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
          r"[A-Za-z]{2,24}(?![\w-]|\.[A-Za-z0-9]|:[\w/~])")  # not git@github.com:org/repo (an scp path)
_IBAN = r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"
# 13-19 digits in one run, or grouped 4-4-4-x (one separator throughout), or 4-6-5 / 4-6-4 (Amex, Diners).
# It starts with the first digit (every network starts with 2-6), which lets `re` skip ahead to candidates
# three times faster than a leading look-behind; the look-behinds then check the characters before it.
_CARD = (r"[2-6](?<![\w.-].)(?<!\d[ -].)"
         r"(?:\d{12,18}|\d{3}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?|\d{3}([ -])\d{6}\2\d{4,5})(?![\w-]|\.\d)")
_SSN = r"(?<![\w.-])(?<!\d[ -])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w-]|[ .,]\d)"
_IPV6 = r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:]|\.\d)"  # a candidate; ipaddress decides
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"(?<![\w.-])(?:{_OCTET}\.){{3}}{_OCTET}(?!\w|\.\d)"
# International: +country code, then groups; 8 to 15 digits in all (E.164).
_PHONE_INTERNATIONAL = r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,5})){1,6}(?!\w|[.-]\d)"
# North America: (202) 555-0143, 202-555-0143, 202.555.0143, 1-800-555-0199 (one separator throughout).
_PHONE_NANP = (r"(?<![\w+.-])(?<!\d[ .-])(?:1[ .-])?"
               r"(?:\([2-9]\d{2}\) ?[2-9]\d{2}[ .-]|[2-9]\d{2}([ .-])[2-9]\d{2}\1)\d{4}(?!\w|[.-]?\d)")
# National with a trunk 0: 030 1234567, 06 12 34 56 78, (030) 123456, 020 7946 0958. Not inside a longer
# run of numbers ("00 01 02 03 04 05 06 07" is a table header).
_PHONE_NATIONAL = (r"(?<![\w+./:-])(?<!\d )(?:\(0[1-9]\d{0,3}\) ?|0[1-9]\d{0,3}[ /-])\d{2,8}(?: \d{2,8}){0,4}"
                   r"(?![\w/:-]|[.,]\d| \d)")

# Any 10-digit NANP-shaped number (or 7 digits) right after a word that introduces a phone: "call (555)
# 123-4567", "Tel: 555.123.4567". The strict patterns above refuse such numbers (exchange 1xx, area 555):
# fine for look-alikes in prose, but here the context says it is a phone, so recall wins.
_PHONE_CONTEXT_WORDS = ("call", "contact", "phone", "tel", "telephone", "mobile", "cell", "fax", "whatsapp")
_PHONE_IN_CONTEXT = (r"(?i:\b(?:" + "|".join(_PHONE_CONTEXT_WORDS) + r")(?:\s+(?:me|us|him|her|them|him/her))?"
                     r"(?:\s+(?:at|on))?\s*[:.#]?\s*)"
                     r"(?P<pii>(?:\+?1[ .-])?\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}|\d{3}[ .-]\d{4})(?![\w]|[.-]?\d)")

_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern("URL_CREDENTIALS", _c(_URL_CREDENTIALS), _span(), hints=("://",)),
    _Pattern("SECRET", _c(_PRIVATE_KEY, re.DOTALL), _span(0), hints=("private key",)),
    _Pattern("SECRET", _c(r"\b(?P<pii>eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,})"), _span(), hints=("eyj",)),  # JWT
    _Pattern("SECRET", _c(r"(?<![\w-])(?P<pii>sk-[\w-]{20,})"), _token_with_digit, hints=("sk-",)),  # OpenAI, Anthropic
    _Pattern("SECRET", _c(r"\b(?P<pii>(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,})"), _span(),  # Stripe
             hints=("k_live_", "k_test_")),
    _Pattern("SECRET", _c(r"\b(?P<pii>(?:AKIA|ASIA)[0-9A-Z]{16})\b"), _span(), hints=("akia", "asia")),  # AWS key id
    _Pattern("SECRET", _c(r"\b(?P<pii>gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{30,})"), _span(),
             hints=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    _Pattern("SECRET", _c(r"\b(?P<pii>hf_[A-Za-z0-9]{30,})\b"), _token_with_digit, hints=("hf_",)),  # Hugging Face
    _Pattern("SECRET", _c(r"\b(?P<pii>xox[baprs]-[A-Za-z0-9-]{10,})"), _token_with_digit, hints=("xox",)),  # Slack
    _Pattern("SECRET", _c(r"\b(?P<pii>AIza[\w-]{35})(?![\w-])"), _span(), hints=("aiza",)),  # Google API key
    _Pattern("SECRET", _c(_BASIC_AUTH), _span(), hints=("basic",)),
    _Pattern("SECRET", _c(r"\b(?i:bearer)[ \t]+(?P<pii>[\w.~+/-]{8,}=*)"), _bearer, hints=("bearer",)),
    _Pattern("SECRET", _c(_ASSIGNED_SECRET), _assigned_secret, hints=("key", "secret", "token", "pass", "pwd"),
             gate=_c(r"(?:key|secret|token|passw(?:or)?d|pwd)[\"']?[ \t]*[:=]")),
    _Pattern("EMAIL", _c(_EMAIL), _email, hints=("@",)),
    _Pattern("IBAN", _c(_IBAN), _iban, needs_digit=True, gate=_c(r"[a-z]{2}\d\d")),
    _Pattern("CREDIT_CARD", _c(_CARD), _card, needs_digit=True, gate=_c(r"\d{4}[ -]?\d{4}")),
    _Pattern("SSN", _c(_SSN), _span(0), needs_digit=True, gate=_c(r"\d{3}[- ]\d\d[- ]\d{4}")),
    _Pattern("IP_ADDRESS", _c(_IPV6), _ipv6, needs_digit=True, gate=_c(r":[0-9A-Fa-f]{0,4}:")),
    _Pattern("IP_ADDRESS", _c(_IPV4), _ipv4, needs_digit=True, gate=_c(r"\d\.\d{1,3}\.\d{1,3}\.\d")),
    _Pattern("PHONE", _c(_PHONE_INTERNATIONAL), _phone(8, 15, may_be_reference=False), needs_digit=True,
             gate=_c(r"\+\d")),
    _Pattern("PHONE", _c(_PHONE_NANP), _phone(10, 11), needs_digit=True, gate=_c(r"\d{3}[ .-]\d{4}")),
    _Pattern("PHONE", _c(_PHONE_NATIONAL), _phone(9, 12), needs_digit=True,
             gate=_c(r"0\d{1,4}(?:[ /-]|\) ?)\d\d")),
    _Pattern("PHONE", _c(_PHONE_IN_CONTEXT), _span(), needs_digit=True, hints=_PHONE_CONTEXT_WORDS,
             gate=_c(r"\d{3}[ .-]\d{4}")),
)

# Each pass that redacts something is followed by one more; real text settles after the second. Only values
# glued together ("+44 20 7946 0958+44 20 7946 0958...") free one neighbour per pass; the cap keeps such a
# row linear in time (past it, a second call may still find something).
_MAX_PASSES = 16


class PiiRedactor:
    """Redacts the chosen PII types; compile once, call `redact` per string."""

    def __init__(self, types: Iterable[str] = PII_TYPES):
        chosen = set(types)
        unknown = chosen - set(PII_TYPES)
        if unknown:
            raise ValueError(f"unknown PII type(s) {sorted(unknown)}; use any of {', '.join(PII_TYPES)}")
        self.types = tuple(t for t in PII_TYPES if t in chosen)
        self._patterns = tuple(p for p in _PATTERNS if p.pii_type in chosen)

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        counts: Counter[str] = Counter()
        # A placeholder can free a neighbour that the boundary checks held back: in "123-45-6789 078 05 1120"
        # the SSN is not taken while digits follow it, until the phone after it is <PHONE>. Passes repeat
        # until nothing changes, so that redacting the output again changes nothing.
        for _ in range(_MAX_PASSES):
            text, found = self._redact_once(text)
            if not found:
                break
            counts.update(found)
        return text, counts

    def _redact_once(self, text: str) -> tuple[str, Counter[str]]:
        counts: Counter[str] = Counter()
        if not text:
            return text, counts
        # Pre-checks once, on the text as it comes in: placeholders add no digits and none of the characters
        # a later pattern needs, so a hint absent now stays absent.
        lowered = text.lower()
        has_digit = _has_digit(text)
        for pattern in self._patterns:
            if pattern.needs_digit and not has_digit:
                continue
            if pattern.hints and not any(hint in lowered for hint in pattern.hints):
                continue
            if pattern.gate is not None and pattern.gate.search(lowered) is None:
                continue
            text = pattern.regex.sub(_replacer(pattern, counts), text)
        return text, counts


def _replacer(pattern: _Pattern, counts: Counter[str]) -> Callable[[re.Match[str]], str]:
    placeholder = f"<{pattern.pii_type}>"

    def replace(m: re.Match[str]) -> str:
        span = pattern.check(m)
        if span is None:
            return m.group()
        counts[pattern.pii_type] += 1
        whole, start = m.group(), m.start()
        return whole[:span[0] - start] + placeholder + whole[span[1] - start:]
    return replace


_default: PiiRedactor | None = None


def redact_pii(text: str) -> tuple[str, Counter[str]]:
    """Redact every PII type with a shared redactor (compiled on first use)."""
    global _default
    if _default is None:
        _default = PiiRedactor()
    return _default.redact(text)
