"""Throwaway TLS certificates for the https tests of the HTTP clients (openssl CLI).

make_self_signed(dir, name, san) writes <name>.pem and <name>.key: a self-signed RSA
certificate valid for one day for the given subjectAltName (default IP:127.0.0.1). A
self-signed certificate is its own CA, so the same file is what a client is given as
its CA bundle (salesforce.ca.file, schema.registry.ssl.ca.location) to trust it.
A missing openssl fails the test; it never skips.
"""
import os
import shutil
import subprocess


def make_self_signed(directory, name="server", san="IP:127.0.0.1"):
    assert shutil.which("openssl"), "openssl is required to make the test certificates"
    cert = os.path.join(directory, name + ".pem")
    key = os.path.join(directory, name + ".key")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=closedloop-test",
                        "-addext", "subjectAltName=" + san,
                        "-addext", "basicConstraints=critical,CA:TRUE"],
                       capture_output=True, text=True)
    assert r.returncode == 0, "openssl could not make a certificate: " + r.stderr
    os.chmod(key, 0o600)
    return cert, key
