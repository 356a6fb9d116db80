// Evaluates flags with the published Node (server) OFREP provider and prints the results as JSON.
//
// Usage: node ofrep_node.mjs SPEC — the same SPEC and output as ofrep_client.py (see there).
// Driven by services/evaluation/tests/api/providers.rs.

import { readFileSync } from 'node:fs';
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const raw = process.argv[2];
const spec = JSON.parse(raw.startsWith('@') ? readFileSync(raw.slice(1), 'utf8') : raw);
const headers = spec.auth === 'x-api-key' ? [['X-API-Key', spec.key]] : [['Authorization', `Bearer ${spec.key}`]];

await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl: spec.baseUrl, headers }));
const client = OpenFeature.getClient();
const getters = {
  boolean: client.getBooleanDetails.bind(client),
  string: client.getStringDetails.bind(client),
  integer: client.getNumberDetails.bind(client),
  float: client.getNumberDetails.bind(client),
  object: client.getObjectDetails.bind(client),
};

const steps = [];
for (const step of spec.steps) {
  const results = [];
  for (const flag of step.flags) {
    const details = await getters[flag.type](flag.key, flag.default, step.context ?? {});
    results.push({
      key: flag.key,
      value: details.value,
      variant: details.variant ?? null,
      reason: details.reason ?? null,
      errorCode: details.errorCode ?? null,
      errorMessage: details.errorMessage ?? null,
    });
  }
  steps.push(results);
}
await OpenFeature.close();
process.stdout.write(JSON.stringify({ steps }) + '\n');
