"""Test certificates: small certificate authorities and the certificates
they sign, written as PEM files (for HTTPS between peers)."""
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _new_key():
    # Elliptic-curve keys: as good for the tests as RSA ones, and made in
    # no time.
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder):
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(
        now + datetime.timedelta(days=30))


class Authority:
    """A self-signed certificate authority."""

    def __init__(self, common_name):
        self.key = _new_key()
        self.name = _name(common_name)
        builder = _validity(x509.CertificateBuilder().subject_name(self.name).issuer_name(
            self.name).public_key(self.key.public_key()).serial_number(
            x509.random_serial_number()))
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                        critical=True)
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        self.certificate = builder.sign(self.key, hashes.SHA256())

    def pem(self):
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name, dns_names=(), server=True):
        """(certificate PEM, private key) signed by this authority."""
        key = _new_key()
        builder = _validity(x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(
            self.name).public_key(key.public_key()).serial_number(x509.random_serial_number()))
        if dns_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(name) for name in dns_names]), critical=False)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                        critical=True)
        certificate = builder.sign(self.key, hashes.SHA256())
        return certificate.public_bytes(serialization.Encoding.PEM), key


def key_pem(key, password=None):
    encryption = (serialization.BestAvailableEncryption(password.encode()) if password
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL, encryption)
