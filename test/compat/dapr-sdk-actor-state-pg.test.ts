/**
 * The official Dapr JS SDK's actor state and reminders through weft on state.postgresql: a
 * throwaway PostgreSQL cluster, chosen by a Dapr Component in `resourcesPath` whose connection
 * string is a secretKeyRef (an environment variable). Skipped, with the reason, when the
 * PostgreSQL server binaries are missing. The suite: test/support/sdk-ledger.ts.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, it } from 'vitest';
import { findPostgres, PostgresServer } from '../support/postgres.ts';
import { sdkActorStateSuite } from '../support/sdk-ledger.ts';

const pg = findPostgres();
if (typeof pg === 'string') {
  describe.skip(`the Dapr JS SDK's actor state on state.postgresql (skipped: ${pg})`, () => {
    it('needs a PostgreSQL server', () => {});
  });
} else {
  let server: PostgresServer | undefined;
  afterAll(async () => {
    await server?.stop();
    delete process.env['WEFT_TEST_PG'];
  });
  sdkActorStateSuite('state.postgresql, from a Dapr component', async (cluster) => {
    server = await PostgresServer.start(pg);
    process.env['WEFT_TEST_PG'] = server.keyValue;
    const dir = join(cluster.dir, 'components');
    mkdirSync(dir);
    writeFileSync(join(dir, 'actorstore.yaml'), [
      'apiVersion: dapr.io/v1alpha1', 'kind: Component', 'metadata:', '  name: actorstore', 'spec:', '  type: state.postgresql', '  version: v1', '  metadata:',
      '    - name: connectionString', '      secretKeyRef: { name: WEFT_TEST_PG, key: WEFT_TEST_PG }',
      '    - name: actorStateStore', '      value: "true"', '',
    ].join('\n'));
    return { extra: { resourcesPath: dir } };
  });
}
