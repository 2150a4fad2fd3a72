"""The recorder's HTTPS on the local network: a self-signed certificate made on first use.

Browsers give the camera and the motion sensors only to secure pages: http://127.0.0.1 is
one, a phone reaching http://192.168.x.y is not. So `record --lan` serves HTTPS with a
certificate made here (an ECDSA P-256 key, valid one year, naming the LAN address and
localhost), kept in the user's config folder ($XDG_CONFIG_HOME or ~/.config, then
neuralworld/record-tls/) so that a phone that accepted it once is not asked again. A new one is
made when the address changes or the old one is about to expire. The phone shows a warning
the first time (the certificate is nobody's but ours): accept it to continue.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
from pathlib import Path

from neuralworld.errors import UserError
from neuralworld.fileio import atomic_write_bytes

VALID_DAYS = 365


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "neuralworld" / "record-tls"


def lan_address() -> str:
    """The address other machines on the local network reach this one at: the source address of
    the default route (a UDP socket's connect sends no packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.254.254.254", 9))
            address = s.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    if address.startswith("127."):
        raise UserError("--lan: this machine has no local network address (connect it to the phone's "
                        "network, or pass --host ADDRESS)")
    return address


def _names(cert) -> set[str]:
    from cryptography import x509
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))


def ensure_certificate(host: str, folder: Path | None = None) -> tuple[Path, Path]:
    """(cert.pem, key.pem) naming `host`, made or remade in `folder` when needed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = Path(folder) if folder else config_dir()
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    now = datetime.datetime.now(datetime.timezone.utc)
    if cert_path.is_file() and key_path.is_file():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if host in _names(cert) and cert.not_valid_after_utc - now > datetime.timedelta(days=7):
                return cert_path, key_path
        except ValueError:
            pass  # unreadable: make a new one
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"neuralworld recorder {host}")])
    alt = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        alt.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(alt))), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    fd = os.open(key_path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    os.replace(key_path.with_suffix(".tmp"), key_path)
    atomic_write_bytes(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx
