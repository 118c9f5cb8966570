"""Keeping secrets out of text that others read: logs, error bodies, CLI messages, reprs.

Two kinds of secret travel in featureplane's strings: bearer tokens (``fpt_<id>_<secret>``) and
passwords inside connection URLs (``redis://:pw@host``, ``postgresql://user:pw@host/db``).
:func:`redact` masks both wherever they appear in a text; :func:`redact_url` masks one URL.
Only error and start-up paths call these, never a successful request.
"""

from __future__ import annotations

import re

MASK = "***"
# fpt_<12 alphanumerics>_<secret>; also a token's secret part after any fpt_<id>_ prefix.
_TOKEN = re.compile(r"fpt_([A-Za-z0-9]*)_[A-Za-z0-9_\-]+")
# scheme://[user]:password@ — greedy to the last "@" of the word: a password may hold one.
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):[^\s]*@")
# Feast's ``host:port,password=…`` connection strings and other ``key=value`` secrets.
_KEY_VALUE = re.compile(r"(?i)\b(password|passwd|pepper|secret)(\s*=\s*)([^\s,;&'\"]+)")


def redact_url(url: str) -> str:
    """``url`` with the password of its user info masked (``redis://:***@host:6379/0``)."""
    return _URL_PASSWORD.sub(rf"\1:{MASK}@", url)


def redact(text: str) -> str:
    """``text`` with bearer tokens, URL passwords and ``password=…`` values masked."""
    if "fpt_" in text:
        text = _TOKEN.sub(rf"fpt_\1_{MASK}", text)
    if "@" in text:
        text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    if "=" in text:
        text = _KEY_VALUE.sub(rf"\1\2{MASK}", text)
    return text
