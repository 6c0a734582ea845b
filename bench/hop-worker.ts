/**
 * The worker side of bench/hop-cost.ts: answers each call at once (a 1 KiB body, transferred),
 * as a piscina task or as a message on the port it hands over at start, like weft's workers.
 */
import { MessageChannel, parentPort } from 'node:worker_threads';
import { move } from 'piscina';

const HEADERS = ['content-type', 'text/plain', 'content-length', '1024'];
const kTransferable = Symbol.for('Piscina.transferable');
const kValue = Symbol.for('Piscina.valueOf');

const { port1, port2 } = new MessageChannel();
port1.on('message', (msg: unknown[]) => {
  const body = new ArrayBuffer(1024);
  port1.postMessage([[msg[1], 0, 200, HEADERS, body, 1, 'node-b']], [body]);
});
parentPort?.postMessage({ type: 'hop-port', port: port2 }, [port2]);

export default function run(): unknown {
  const body = new ArrayBuffer(1024);
  return move({ [kTransferable]: [body], [kValue]: { type: 'response', head: { status: 200, headers: HEADERS }, body, attempts: 1, nodeId: 'node-b' } } as never);
}
