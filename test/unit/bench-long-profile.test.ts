/**
 * The long-stream profile measures the gateway as it ships: its generated
 * config sets where the upstream is, the keys and the redirect (and a quick
 * stop), and leaves every limit to the gateway's own defaults; above all no
 * max_connections, so nothing can queue unless the gateway itself adds a cap.
 */
import { shippedDefaultsConfig } from '../../bench/long-profile.js';
import { parseConfigText } from '../../src/config/load-file.js';
import { fileConfigSchema, upstreamSchema } from '../../src/config/schema.js';

test("the profile's gateway config is the shipped defaults but for where, who and the redirect", () => {
  const config = shippedDefaultsConfig('http://127.0.0.1:4000', 'client-key-0123456789', { from: 'gpt-4', to: 'bench-model' });
  const parsed = parseConfigText(JSON.stringify(config), 'bench');
  expect(parsed.upstreams['default']!.max_connections).toBeUndefined();
  expect(parsed.upstreams['default']).toEqual(upstreamSchema.parse({ url: 'http://127.0.0.1:4000/v1', api_key: 'sk-bench-upstream' }));
  const defaults = fileConfigSchema.parse({ upstreams: { default: { url: 'http://127.0.0.1:4000/v1' } } });
  const { upstreams: _upstreams, client_keys: _keys, model_redirects: _redirects, shutdown, ...settings } = parsed;
  const { upstreams: _u, client_keys: _k, model_redirects: _r, shutdown: _s, ...defaultSettings } = defaults;
  expect(settings).toEqual(defaultSettings);
  expect(shutdown).toEqual({ drain_delay_ms: 0, timeout_ms: 2000 });
  expect(parsed.model_redirects).toEqual({ 'gpt-4': 'bench-model' });
});
