"""Which email addresses we accept: ordinary deliverable ones, checked by the email-validator library.

No IP literals, no dotless or special-use domains (`localhost`, `.test`, …), no quoted
local parts, no internationalised local parts (our mail goes out without SMTPUTF8),
local part at most 64 characters and the whole at most 254. No DNS query is made:
whether the domain takes mail is the mail server's business, and a login must not
wait on a resolver.
"""
from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


def normalize_address(value: str) -> str:
    """The address as stored and compared (trimmed, lower-case, domain in ASCII); ValueError for one we refuse."""
    if not isinstance(value, str):
        raise ValueError("an email address must be a string")
    try:
        checked = validate_email(value.strip(), check_deliverability=False, strict=True, allow_smtputf8=False,
                                 allow_quoted_local=False, allow_domain_literal=False, allow_display_name=False,
                                 allow_empty_local=False, globally_deliverable=True)
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None
    return checked.ascii_email.lower()
