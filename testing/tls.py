"""Test certificates for a TLS broker, made with openssl (keys, certificates) and keytool
(the Java truststore).

    certs = make_certs(tmp_dir)
    certs.ca_pem            # the CA a client trusts (ssl.ca.location)
    certs.other_ca_pem      # an unrelated CA: a client trusting it rejects the broker
    certs.keystore          # PKCS12: the broker's key and certificate (CN and SAN localhost,
                            #   SAN IP 127.0.0.1), signed by the CA, valid for 30 days
    certs.expired_keystore  # PKCS12: the same names, signed by the CA, expired in 2020
    certs.truststore        # PKCS12 truststore holding the CA (keytool)
    certs.password          # the keystores' and truststore's password

Everything lands in `directory`. Missing tools raise testing.fetch.Failure naming the tool
and the Debian package that has it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from testing.fetch import Failure

TOOL_TIMEOUT = 60.0
SUBJECT_ALT_NAMES = "DNS:localhost,IP:127.0.0.1"
PASS_VAR = "LAGMON_TEST_STORE_PASSWORD"


@dataclass(frozen=True)
class Certs:
    directory: Path
    ca_pem: Path
    other_ca_pem: Path
    keystore: Path
    expired_keystore: Path
    truststore: Path
    password: str


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if not found:
        raise Failure(
            f"prerequisite missing: {name} is not on PATH; it makes the test certificates; "
            f"install it, e.g. `apt-get install {package}`",
            2,
        )
    return found


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    """Run a tool; passwords travel in `env` (openssl `env:`, keytool `:env`), never in argv."""
    try:
        out = subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired as exc:
        raise Failure(f"{what} did not finish within {TOOL_TIMEOUT:.0f} s") from exc
    if out.returncode != 0:
        raise Failure(f"{what} failed (exit {out.returncode}):\n{(out.stdout + out.stderr).strip()}")


def _ca(openssl: str, d: Path, name: str) -> tuple[Path, Path]:
    key, pem = d / f"{name}.key", d / f"{name}.pem"
    _run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30"]
        + ["-subj", f"/CN=lagmon test {name}", "-keyout", str(key), "-out", str(pem)]
        + [
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        f"openssl making the {name} certificate",
    )
    return key, pem


def _ca_config(d: Path, ca_key: Path, ca_pem: Path) -> Path:
    """A minimal `openssl ca` configuration: the only openssl 3.0 command that sets a start
    date, which an already expired certificate needs."""
    db = d / "ca-db"
    db.mkdir(exist_ok=True)
    (db / "index.txt").write_text("")
    (db / "serial").write_text(f"{secrets.randbits(63):016X}\n")
    conf = d / "ca.cnf"
    conf.write_text(
        "[ ca ]\ndefault_ca = test\n"
        "[ test ]\n"
        f"dir = {db}\ndatabase = $dir/index.txt\nserial = $dir/serial\nnew_certs_dir = $dir\n"
        f"certificate = {ca_pem}\nprivate_key = {ca_key}\n"
        "default_md = sha256\npolicy = anything\ncopy_extensions = none\nunique_subject = no\n"
        "x509_extensions = broker\n"
        "[ anything ]\ncommonName = supplied\n"
        "[ broker ]\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage = serverAuth\nsubjectAltName = {SUBJECT_ALT_NAMES}\n"
    )
    return conf


def _broker_cert(openssl: str, d: Path, name: str, conf: Path, dates: list[str]) -> tuple[Path, Path]:
    key, csr, pem = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
    _run(
        [openssl, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"]
        + ["-keyout", str(key), "-out", str(csr)],
        f"openssl making the {name} key",
    )
    _run(
        [openssl, "ca", "-batch", "-notext", "-config", str(conf), "-in", str(csr), "-out", str(pem), *dates],
        f"openssl signing the {name} certificate",
    )
    return key, pem


def _pkcs12(openssl: str, key: Path, pem: Path, ca_pem: Path, out: Path, password: str) -> None:
    _run(
        [openssl, "pkcs12", "-export", "-name", "broker", "-inkey", str(key), "-in", str(pem)]
        + ["-certfile", str(ca_pem), "-out", str(out), "-passout", f"env:{PASS_VAR}"],
        f"openssl writing {out.name}",
        {PASS_VAR: password},
    )


def make_certs(directory: Path | str) -> Certs:
    """A CA, an unrelated CA, a valid and an expired broker certificate, their PKCS12
    keystores and a truststore, all in `directory` (created)."""
    openssl = _tool("openssl", "openssl")
    keytool = _tool("keytool", "openjdk-17-jre-headless")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(12)
    ca_key, ca_pem = _ca(openssl, d, "ca")
    _other_key, other_pem = _ca(openssl, d, "other-ca")
    conf = _ca_config(d, ca_key, ca_pem)
    key, pem = _broker_cert(openssl, d, "broker", conf, ["-days", "30"])
    old_key, old_pem = _broker_cert(
        openssl, d, "expired", conf, ["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"]
    )
    keystore, expired = d / "broker.p12", d / "expired.p12"
    _pkcs12(openssl, key, pem, ca_pem, keystore, password)
    _pkcs12(openssl, old_key, old_pem, ca_pem, expired, password)
    truststore = d / "truststore.p12"
    truststore.unlink(missing_ok=True)  # keytool would add to an old one
    _run(
        [keytool, "-importcert", "-noprompt", "-alias", "ca", "-file", str(ca_pem)]
        + ["-keystore", str(truststore), "-storetype", "PKCS12", "-storepass:env", PASS_VAR],
        "keytool writing the truststore",
        {PASS_VAR: password},
    )
    return Certs(d, ca_pem, other_pem, keystore, expired, truststore, password)
