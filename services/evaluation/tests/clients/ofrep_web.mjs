// Evaluates flags with the published web (browser) OFREP provider, under Node 20 (global fetch; the
// provider needs no DOM: it checks for `document`, `localStorage` and `EventSource` before using them),
// and prints the results as JSON.
//
// Usage: node ofrep_web.mjs SPEC — the same SPEC as ofrep_client.py. Each step sets the global context
// (the first before the provider initialises, which fetches every flag in one bulk request; each later
// one triggers a bulk refetch, with the previous If-None-Match) and then evaluates its flags from the
// provider's cache. Prints {"steps": [...], "events": [{"type", "message"}], "initError": string|null}.
// Driven by services/evaluation/tests/api/providers.rs.

import { readFileSync } from 'node:fs';
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const raw = process.argv[2];
const spec = JSON.parse(raw.startsWith('@') ? readFileSync(raw.slice(1), 'utf8') : raw);
const headers = spec.auth === 'x-api-key' ? [['X-API-Key', spec.key]] : [['Authorization', `Bearer ${spec.key}`]];

const events = [];
for (const type of [ProviderEvents.Ready, ProviderEvents.Error, ProviderEvents.Stale, ProviderEvents.ConfigurationChanged]) {
  OpenFeature.addHandler(type, (details) => events.push({ type, message: details?.message ?? null }));
}

const provider = new OFREPWebProvider({
  baseUrl: spec.baseUrl,
  headers,
  // No polling or streams: every fetch in this run is one the steps cause.
  pollInterval: 0,
  changeDetection: 'none',
  cacheMode: 'disabled',
});

let initError = null;
await OpenFeature.setContext(spec.steps[0]?.context ?? {});
try {
  await OpenFeature.setProviderAndWait(provider);
} catch (error) {
  initError = String(error?.message ?? error);
}
const client = OpenFeature.getClient();
const getters = {
  boolean: client.getBooleanDetails.bind(client),
  string: client.getStringDetails.bind(client),
  integer: client.getNumberDetails.bind(client),
  float: client.getNumberDetails.bind(client),
  object: client.getObjectDetails.bind(client),
};

const steps = [];
for (const [index, step] of spec.steps.entries()) {
  if (index > 0) {
    await OpenFeature.setContext(step.context ?? {});
  }
  steps.push(
    step.flags.map((flag) => {
      const details = getters[flag.type](flag.key, flag.default);
      return {
        key: flag.key,
        value: details.value,
        variant: details.variant ?? null,
        reason: details.reason ?? null,
        errorCode: details.errorCode ?? null,
        errorMessage: details.errorMessage ?? null,
      };
    }),
  );
}
await OpenFeature.close();
process.stdout.write(JSON.stringify({ steps, events, initError }) + '\n');
