"""The TLS context of a syslog-over-TLS or https destination: its CA file (or the
system's CAs), an optional client certificate, TLS 1.2 at least, verification on unless
the destination turns it off."""

from __future__ import annotations

import ssl

from pipeline.config import ConfigError, ForwardDestination


def client_context(dest: ForwardDestination) -> ssl.SSLContext:
    for setting, path in (
        ("ca_file", dest.ca_file),
        ("client_cert", dest.client_cert),
        ("client_key", dest.client_key),
    ):
        if path is not None and not path.is_file():
            raise ConfigError(f"destination {dest.name}: {setting} {path} does not exist")
    try:
        context = ssl.create_default_context(cafile=str(dest.ca_file) if dest.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if not dest.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if dest.client_cert is not None:
            context.load_cert_chain(str(dest.client_cert), str(dest.client_key or dest.client_cert))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"destination {dest.name}: cannot load the CA file or client certificate ({exc})"
        ) from None
    return context
