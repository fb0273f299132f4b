// A worker thread of readers for bench.mjs: joins `count` readers to the
// room, then reports when each edit (by index) arrived, in absolute ms.
import { parentPort, workerData } from "node:worker_threads";
import { Server, connect, joinDoc } from "../lib/helpers.mjs";

const { url, room, count, edits } = workerData;
const server = Object.assign(Object.create(Server.prototype), { url });
const arrivals = [];
let complete = 0;
for (let i = 0; i < count; i++) {
  const r = await joinDoc(await connect(server), room);
  const text = r.doc.getText("t");
  const seen = { n: 0 };
  const mine = [];
  arrivals.push(mine);
  r.doc.subscribe(() => {
    const at = performance.timeOrigin + performance.now();
    for (; seen.n < text.length; seen.n++) mine.push(at);
    if (seen.n === edits && ++complete === count) parentPort.postMessage({ done: arrivals });
  });
}
parentPort.postMessage({ ready: true });
