/**
 * The official Dapr JS SDK's actor state and reminders through weft on the default store
 * (state.sqlite beside the registry, no component file): test/support/sdk-ledger.ts.
 */
import { sdkActorStateSuite } from '../support/sdk-ledger.ts';

sdkActorStateSuite('state.sqlite, the default', async () => ({ extra: {} }));
