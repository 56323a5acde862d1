import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { ClientCertificate } from './model.js';

/**
 * Why a client certificate and key cannot be used together, or null when
 * they can: each must parse (PEM), and the key must be the certificate's.
 * A pair caught mid-rotation (the key file written, the certificate not yet)
 * fails here, at load, rather than in every TLS handshake.
 */
export function clientCertificateProblem(pair: ClientCertificate): string | null {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pair.cert);
  } catch {
    return 'the client certificate is not a PEM certificate';
  }
  try {
    return certificate.checkPrivateKey(createPrivateKey(pair.key)) ? null : 'the client key is not the certificate’s';
  } catch {
    return 'the client key is not a PEM private key';
  }
}
