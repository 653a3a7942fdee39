"""The default redaction rules: a table of RE2 patterns with the substrings that trigger
them, and the checks that spare evidence (``pipeline/redaction.py`` runs them).

Written from the documented syntax of the tools whose secrets they mask, and measured on
the labelled corpus ``tests/data/redaction/corpus.jsonl`` (``tests/test_redaction.py``,
``benchmarks/redaction.py``). A rule is ``name -> (pattern, triggers)``: the pattern's
group named ``keep`` stays before the mask, one named ``after`` behind it; a value is
searched only when it holds one of the triggers (lower case).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_SSH_LIKE = frozenset(
    ("ssh", "scp", "sftp", "rsync", "git", "sshpass", "mosh", "ssh-copy-id", "autossh",
     "ssh-keyscan", "sshfs")
)  # fmt: skip
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _connection_target(value: str, start: int, end: int, secret: str) -> bool:
    """Whether a user@host is where a command connects, not an address to hide: an
    ``scp``/``git``/``rsync`` target (``user@host:path``), a URL's user
    (``scheme://user@host``), or any user@host of an ssh-like command line."""
    if value[end : end + 1] == ":" or value[max(0, start - 3) : start] == "://":
        return True
    for word in value.split(None, 8):
        if _ASSIGNMENT.match(word) or word in ("sudo", "env", "exec", "nohup", "time"):
            continue
        return word.rsplit("/", 1)[-1] in _SSH_LIKE
    return False


_VALUE = r"""(?:'[^'\n]*'|"[^"\n]*"|[^\s'"\-][^\s'"]*)"""
"""A command-line argument: quoted (quotes and all), or a bare word not starting with -."""
_PARAM_VALUE = r"""(?:'[^'\n]*'|"[^"\n]*"|[^\s&'",;}\])]+)"""
"""A parameter's value: quoted, or up to a separator of URLs, JSON or shell."""
_SECRET_TRIGGERS = (
    "pass", "pwd", "secret", "token", "credential",
    *(f"{word}{sep}key" for word in ("api", "access", "account", "auth", "private")
      for sep in ("", "_", "-")),
)  # fmt: skip
"""What a value holds when one of the _SECRET_WORDS may be in it (lower case)."""

_NOT_A_SECRET = re.compile(r"""^['"]?(?:[/~$]|\.{0,2}/|[A-Za-z_][A-Za-z0-9_]*=[^=\s'"])""")


def _reference(value: str, start: int, end: int, secret: str) -> bool:
    """Whether a flag's or parameter's value names where a secret is rather than being
    one: a path (``--private-key ~/.ssh/id``), a variable (``$DB_PASSWORD``) or options
    (``--secret id=npm,src=/run/npmrc``)."""
    return _NOT_A_SECRET.match(secret) is not None


def _variable(value: str, start: int, end: int, secret: str) -> bool:
    """Whether a password argument is a shell variable (``-p"$DB_PW"``, ``--user
    ci:${TOKEN}``): where the secret came from, which the audit trail keeps."""
    return secret.lstrip("'\"").startswith("$")


_SECRET_WORDS = (
    r"password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|account[_-]?key"
    r"|auth[_-]?key|private[_-]?key|client[_-]?secret|credentials?|storepass|keypass"
)

# Order matters: a password in a URL is masked before the e-mail rule could see it.
DEFAULT_RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "private_key": (
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?"
        r"(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
        ("private key",),
    ),
    "aws_access_key": (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", ("akia", "asia")),
    "aws_bedrock_key": (r"\bABSK[A-Za-z0-9+/]{100,}={0,2}", ("absk",)),
    "aws_secret_key": (
        r"(?i)(?P<keep>aws_secret_access_key['\"]?\s*[=:\s]\s*['\"]?)[A-Za-z0-9/+=]{40}",
        ("aws_secret",),
    ),
    "jwt": (r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*", ("eyj",)),
    "bearer_token": (r"(?i)(?P<keep>\bbearer\s+)[A-Za-z0-9\-._~+/]+=*", ("bearer",)),
    "basic_auth": (r"(?i)(?P<keep>\bbasic\s+)[A-Za-z0-9+/]{8,}={0,2}", ("basic",)),
    "url_password": (
        r"(?P<keep>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?P<after>@)",
        ("://",),
    ),
    "auth_header": (
        # Any scheme (Token, Api-Token, SSWS, ...) or none; Bearer and Basic values are
        # masked by their rules first, and a mask is never masked again.
        r"(?i)(?P<keep>\bauthorization['\"]?\s*:\s*['\"]?\s*(?:[a-z][a-z0-9_-]*\s+)?)"
        r"[^\s'\"]{8,}",
        ("authorization",),
    ),
    "docker_auth": (r"(?P<keep>\"auth\"\s*:\s*\")[A-Za-z0-9+/=]{8,}", ('"auth"',)),
    "openai_key": (
        r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}|\bsk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}",
        ("sk-",),
    ),
    "anthropic_key": (r"\bsk-ant-[a-z]+\d*-[A-Za-z0-9_-]{40,}", ("sk-ant-",)),
    "huggingface_token": (r"\b(?:hf_|api_org_)[A-Za-z0-9]{34,}\b", ("hf_", "api_org_")),
    "azure_client_secret": (r"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}", ("q~",)),
    "heroku_key": (r"\bHRKU-[A-Za-z0-9_-]{60}", ("hrku-",)),
    "sendgrid_key": (r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b", ("sg.",)),
    "slack_token": (
        r"\bxox[abposre](?:\.xox[a-z])?-[A-Za-z0-9-]{10,}|\bxapp-\d-[A-Za-z0-9-]{10,}",
        ("xox", "xapp-"),
    ),
    "slack_webhook": (
        r"(?P<keep>hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]+/[AB][A-Z0-9]+/"
        r"(?:[0-9]+/)?)[A-Za-z0-9]{16,}(?P<after>[^A-Za-z0-9/]|$)",
        ("hooks.slack.com",),
    ),
    "stripe_key": (
        r"\b(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{16,}",
        ("_live_", "_test_", "_prod_"),
    ),
    "npm_token": (r"\bnpm_[A-Za-z0-9]{36}\b", ("npm_",)),
    "pypi_token": (r"\bpypi-AgE[A-Za-z0-9_-]{50,}", ("pypi-age",)),
    "gitlab_token": (
        r"\bgl(?:pat|ptt|dt|rt|cbt|oas|soat|ft|imt|agent)-[A-Za-z0-9_-]{20,}",
        tuple(
            f"gl{kind}-"
            for kind in ("pat", "ptt", "dt", "rt", "cbt", "oas", "soat", "ft", "imt", "agent")
        ),
    ),
    "google_api_key": (r"\bAIza[0-9A-Za-z_-]{35}", ("aiza",)),
    "github_token": (
        r"\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{22,}",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    "curl_user": (
        # -u user:pw, -u "user:pw", -u "user":"pw", --user user:'pw'
        r"(?P<keep>\bcurl\b[^|;&\n]*?\s(?:-u|--user)(?:\s+|=)"
        r"(?:\"[^\"\s]*\"|'[^'\s]*'|['\"]?[^\s:'\"]*):)(?:\"[^\"]*\"|'[^']*'|[^\s'\"]+)",
        ("curl",),
    ),
    "password_flag": (
        # The short flags that take a password, for the commands where they do (-p is a
        # port or a parent directory elsewhere): attached (mysql -pPW, 7z -pPW) or not.
        r"(?P<keep>\b(?:(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump|sshpass|7z|7za)\b"
        r"[^|;&\n]*?\s-p|(?:sshpass|docker\s+login|podman\s+login|helm\s+registry\s+login"
        r"|twine\s+upload|az\s+login|mongo|mongosh|mongodump|mongorestore|mongoexport"
        r"|mongoimport)\b[^|;&\n]*?\s-p\s+|redis-cli\b[^|;&\n]*?\s-a\s+"
        r"|(?:ldapsearch|ldapmodify|ldapadd|ldapdelete|ldappasswd|ldapwhoami)\b[^|;&\n]*?\s-w\s*"
        r"|(?:sqlcmd|bcp|osql)\b[^|;&\n]*?\s-P\s*|(?:zip|unzip)\b[^|;&\n]*?\s-P\s+"
        r"|ssh-keygen\b[^|;&\n]*?\s-[NP]\s+|smbclient\b[^|;&\n]*?\s-U\s*[^\s%]+%"
        r"|htpasswd(?:\s+-[a-zA-Z]+)*?\s+-[a-zA-Z]*b[a-zA-Z]*(?:\s+-[a-zA-Z]+)*\s+[^\s-]\S*\s+\S+\s+"
        r"|\bpass:))" + _VALUE,
        (
            "mysql",
            "mariadb",
            "sshpass",
            "login",
            "twine",
            "redis-cli",
            "pass:",
            "7z",
            "mongo",
            "ldap",
            "sqlcmd",
            "bcp",
            "osql",
            "zip",
            "ssh-keygen",
            "smbclient",
            "htpasswd",
        ),
    ),
    "secret_flag": (
        r"(?i)(?P<keep>(?:^|\s)--?[a-z0-9-]*(?:" + _SECRET_WORDS + r")(?:=|\s+))" + _VALUE,
        _SECRET_TRIGGERS,
    ),
    "secret_param": (
        r"(?i)(?P<keep>(?:^|[^a-z0-9])[a-z0-9_.-]*(?:"
        + _SECRET_WORDS
        + r")['\"]?\s*[=:]\s*)"
        + _PARAM_VALUE,
        _SECRET_TRIGGERS,
    ),
    "email": (r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b", ("@",)),
}
"""name -> (RE2 pattern, trigger substrings). A group named ``keep`` stays before the
mask, one named ``after`` behind it."""

SPARE: dict[str, Callable[[str, int, int, str], bool]] = {
    "email": _connection_target,
    "secret_flag": _reference,
    "secret_param": _reference,
    "auth_header": _reference,
    "curl_user": _variable,
    "password_flag": _variable,
}
