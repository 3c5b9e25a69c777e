import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const openssl = promisify(execFile);

export interface ClusterPki {
  caCert: string;
  servingCert: string;
  servingKey: string;
  adminCert: string;
  adminKey: string;
  serviceAccountKey: string;
  serviceAccountPub: string;
}

async function sign(dir: string, name: string, subject: string, extensions: string): Promise<void> {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  await openssl('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-subj', subject, '-out', csr]);
  await writeFile(ext, extensions);
  await openssl('openssl', [
    'x509', '-req', '-in', csr, '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial',
    '-days', '30', '-sha256', '-extfile', ext, '-out', join(dir, `${name}.crt`),
  ]);
}

/**
 * One cluster's PKI, like envtest's: its own CA, a serving certificate for
 * loopback, a client certificate for an admin in system:masters, and the
 * service-account signing key pair. Made with the openssl CLI: a test-only need
 * that does not justify an X.509 library.
 */
export async function createClusterPki(dir: string, clusterName: string): Promise<ClusterPki> {
  await openssl('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '30',
    '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt'), '-subj', `/CN=${clusterName}-ca`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await sign(
    dir,
    'serving',
    `/CN=${clusterName}-apiserver`,
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n',
  );
  await sign(
    dir,
    'admin',
    '/O=system:masters/CN=rowcast-test-admin',
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n',
  );
  await openssl('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', join(dir, 'sa.key')]);
  await openssl('openssl', ['pkey', '-in', join(dir, 'sa.key'), '-pubout', '-out', join(dir, 'sa.pub')]);
  const read = (file: string): Promise<string> => readFile(join(dir, file), 'utf8');
  return {
    caCert: await read('ca.crt'),
    servingCert: await read('serving.crt'),
    servingKey: await read('serving.key'),
    adminCert: await read('admin.crt'),
    adminKey: await read('admin.key'),
    serviceAccountKey: await read('sa.key'),
    serviceAccountPub: await read('sa.pub'),
  };
}
