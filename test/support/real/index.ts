/**
 * Real programs for tests, each started on free loopback ports with its own temp dir and stopped by
 * its handle's stop() (a guard process kills it if the test process dies first). A missing
 * program is an error (RealPartError, code REAL_PART_MISSING), never a skipped test.
 *
 * Installed by .ci/run: redis-server, squid, tinyproxy, python3, openssl (test/tools/install-packages.sh);
 * Jaeger v2 built by test/tools/build-jaeger.sh (jest's global setup).
 */
export { RealPartError } from './process.js';
export type { RealPartErrorCode } from './process.js';
export { startRedis } from './redis.js';
export type { RedisHandle, RedisOptions } from './redis.js';
export { startSquid } from './squid.js';
export type { SquidHandle, SquidOptions } from './squid.js';
export { startTinyproxy } from './tinyproxy.js';
export type { TinyproxyHandle, TinyproxyOptions } from './tinyproxy.js';
export { JAEGER_START_TIMEOUT_MS, jaegerBinary, startJaeger } from './jaeger.js';
export type { JaegerHandle, JaegerOptions, JaegerSpan, JaegerTrace } from './jaeger.js';
export { python3, runPython } from './python.js';
export type { PythonResult } from './python.js';
export { makeTestCertificates } from './tls.js';
export type { TestCertificateOptions, TestCertificates } from './tls.js';
