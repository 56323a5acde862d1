/**
 * A throwaway CA and a server certificate for 127.0.0.1 and localhost (or the names given), and
 * optionally a client certificate for mTLS, made with the openssl CLI (node:crypto makes keys but
 * not X.509 certificates).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireBinary } from './process.js';

export interface TestCertificates {
  /** PEM of the CA that signed the server certificate: what a client must trust. */
  ca: string;
  cert: string;
  key: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  /** With `client: true`: a client certificate (extendedKeyUsage clientAuth) signed by the same CA. */
  client?: { cert: string; key: string; certFile: string; keyFile: string };
}

export interface TestCertificateOptions {
  /** subjectAltName entries of the server certificate; default `IP:127.0.0.1`, `DNS:localhost`. */
  serverNames?: string[];
  /** Also make client.pem / client.key for mTLS. */
  client?: boolean;
}

/** Writes ca.pem, server.pem and server.key (and client.pem, client.key) into `dir` and returns them. */
export function makeTestCertificates(dir: string, options: TestCertificateOptions = {}): TestCertificates {
  const openssl = requireBinary('openssl');
  const run = (...args: string[]): void => {
    execFileSync(openssl, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const names = options.serverNames ?? ['IP:127.0.0.1', 'DNS:localhost'];
  writeFileSync(join(dir, 'san.ext'), `subjectAltName = ${names.join(', ')}\n`);
  run(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=api-proxy test CA',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
  );
  run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', 'server.pem', '-extfile', 'san.ext');
  const caFile = join(dir, 'ca.pem');
  const certFile = join(dir, 'server.pem');
  const keyFile = join(dir, 'server.key');
  const certificates: TestCertificates = {
    ca: readFileSync(caFile, 'utf8'),
    cert: readFileSync(certFile, 'utf8'),
    key: readFileSync(keyFile, 'utf8'),
    caFile,
    certFile,
    keyFile,
  };
  if (options.client === true) {
    writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage = clientAuth\n');
    run(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-subj',
      '/CN=api-proxy test client',
      '-keyout',
      'client.key',
      '-out',
      'client.csr',
    );
    run(
      'x509',
      '-req',
      '-in',
      'client.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-out',
      'client.pem',
      '-extfile',
      'client.ext',
    );
    const clientCertFile = join(dir, 'client.pem');
    const clientKeyFile = join(dir, 'client.key');
    certificates.client = {
      cert: readFileSync(clientCertFile, 'utf8'),
      key: readFileSync(clientKeyFile, 'utf8'),
      certFile: clientCertFile,
      keyFile: clientKeyFile,
    };
  }
  return certificates;
}
