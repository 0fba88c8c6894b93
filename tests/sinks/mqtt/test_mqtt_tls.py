"""mqtts:// against a real mosquitto TLS listener with a CA made for the test."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import servers
from servers import async_wait_for
from solarbridge.model import Reading
from solarbridge.plugin import Context
from solarbridge.sinks.mqtt.sink import MqttConfig, MqttSink

pytestmark = pytest.mark.servers


def make_ca_and_server(d):
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "solarbridge test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                                     serialization.NoEncryption()))
    return d / "ca.pem"


class TlsMosquitto(servers.Mosquitto):
    """The fixture's broker with its listener switched to TLS (certificates from make_ca_and_server)."""

    def _spawn(self, key, argv, env=None):  # type: ignore[no-untyped-def]
        conf = self.dir / "mosquitto.conf"
        lines = conf.read_text().splitlines()
        d = self.dir
        lines[1:1] = [f"cafile {d}/ca.pem", f"certfile {d}/server.pem", f"keyfile {d}/server.key"]
        if os.geteuid() == 0 and "user root" not in lines:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        return super()._spawn(key, argv, env)


@pytest.fixture
def tls_broker(tmp_path_factory):
    srv = servers._make(TlsMosquitto, tmp_path_factory, "mosquitto")
    make_ca_and_server(srv.dir)
    try:
        yield srv.start()
    finally:
        srv.stop()


def test_mqtts_with_ca_file_and_refusal_without_it(tls_broker, tmp_path):
    ca = tls_broker.dir / "ca.pem"

    async def main() -> None:
        good = MqttSink(MqttConfig(type="mqtt", name="tls", url=f"mqtts://127.0.0.1:{tls_broker.port}",
                                   ca_file=str(ca)), Context.standalone("tls", "sink", "mqtt", tmp_path))
        bad = MqttSink(MqttConfig(type="mqtt", name="notrust", url=f"mqtts://127.0.0.1:{tls_broker.port}"),
                       Context.standalone("notrust", "sink", "mqtt", tmp_path))
        await good.start()
        await bad.start()
        try:
            await async_wait_for(lambda: good.connected, what="TLS connection")
            await good.write([Reading("d", "inverter", dt.datetime.now(dt.UTC), {"pv_power_w": 1.0})])
            await async_wait_for(lambda: good.published >= 3, what="publishes over TLS")
            # without our CA the server certificate is not trusted: a clear error, no connection
            await async_wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in bad.ctx.health.last_error, what="TLS error")
            assert not bad.connected
        finally:
            await good.stop()
            await bad.stop()

    asyncio.run(main())
