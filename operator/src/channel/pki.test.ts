import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { createCertificateAuthority, issueServingCertificate } from './pki.js';

const ca = createCertificateAuthority('secai-fleet-test-ca', 30);
const serving = issueServingCertificate(ca, ['secai-operator.secai-system.svc', 'localhost'], 30);

it('makes a CA and a serving certificate that chain to it', () => {
  const caCert = new X509Certificate(ca.certPem);
  const leaf = new X509Certificate(serving.certPem);
  expect(caCert.ca).toBe(true);
  expect(leaf.ca).toBe(false);
  expect(leaf.checkIssued(caCert)).toBe(true);
  expect(leaf.verify(caCert.publicKey)).toBe(true);
  expect(leaf.subjectAltName).toBe('DNS:secai-operator.secai-system.svc, DNS:localhost');
  expect(leaf.checkHost('secai-operator.secai-system.svc')).toBe('secai-operator.secai-system.svc');
  expect(leaf.checkHost('other.example.com')).toBeUndefined();
});

it('serves TLS that a client trusting only the CA accepts for the right name and refuses otherwise', async () => {
  const server = tls.createServer({ cert: serving.certPem, key: serving.keyPem }, (socket) => socket.end('ok'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const handshake = (servername: string, caPem: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername, ca: caPem }, () => socket.once('data', (d) => resolve(d.toString())));
      socket.on('error', reject);
    });
  try {
    await expect(handshake('secai-operator.secai-system.svc', ca.certPem)).resolves.toBe('ok');
    await expect(handshake('evil.example.com', ca.certPem)).rejects.toThrow(/does not match|altnames/i);
    const other = createCertificateAuthority('another-ca', 1);
    await expect(handshake('secai-operator.secai-system.svc', other.certPem)).rejects.toThrow(/certificate/i);
  } finally {
    server.close();
  }
});
