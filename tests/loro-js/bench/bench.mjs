// Benchmark with real loro-websocket clients against `docweave serve`:
//  1. one writer and 50 readers in one room, 1,000 single-character edits:
//     edits/s delivered to every reader, and latency (edit made -> seen by a reader),
//     measured after WARMUP edits (200) to another text have reached every reader,
//     so the figures are not those of Node compiling the clients' code;
//  2. one client joining 1,000 rooms.
// Run: DOCWEAVE_BIN=target/release/docweave node tests/loro-js/bench/bench.mjs
import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { Server, connect, joinDoc, closeAll, unacked, until } from "../lib/helpers.mjs";

/** CPU seconds the server process used so far (Linux). */
function serverCpu(server) {
  const fields = readFileSync(`/proc/${server.child.pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const READERS = Number(process.env.READERS ?? 50);
const EDITS = Number(process.env.EDITS ?? 1000);
const ROOMS = Number(process.env.ROOMS ?? 1000);
// Edits per second the writer makes (0: as fast as it can).
const RATE = Number(process.env.RATE ?? 0);
// Reader threads (0: readers share the writer's thread).
const WORKERS = Number(process.env.WORKERS ?? 0);
// Edits made and delivered before the measured ones.
const WARMUP = Number(process.env.WARMUP ?? 200);

/** Edits to a text the measurement does not look at, as the measured ones
 * are made; resolves once `delivered()` says every reader has them. */
async function warmUp(doc, delivered) {
  const warm = doc.getText("warm");
  for (let i = 0; i < WARMUP; i++) {
    warm.insert(i, "w");
    doc.commit();
    await new Promise((r) => setImmediate(r));
  }
  await until("the warm-up edits delivered", delivered, 60000);
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

async function fanOut(server) {
  const writerClient = await connect(server);
  const writer = await joinDoc(writerClient, "bench");
  const readers = [];
  for (let i = 0; i < READERS; i++) readers.push(await joinDoc(await connect(server), "bench"));
  const sentAt = new Array(EDITS);
  const latencies = [];
  let complete = 0;
  let resolveAll;
  const all = new Promise((r) => (resolveAll = r));
  for (const r of readers) {
    let seen = 0;
    const text = r.doc.getText("t");
    r.doc.subscribe(() => {
      const now = performance.now();
      const len = text.length;
      for (; seen < len; seen++) latencies.push(now - sentAt[seen]);
      if (seen === EDITS && ++complete === READERS) resolveAll();
    });
  }
  await warmUp(writer.doc, () => readers.every((r) => r.doc.getText("warm").length === WARMUP));
  const text = writer.doc.getText("t");
  const cpuBefore = serverCpu(server);
  const clientCpuBefore = process.cpuUsage();
  const start = performance.now();
  for (let i = 0; i < EDITS; i++) {
    if (RATE > 0) {
      const at = start + (i * 1000) / RATE;
      const wait = at - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    }
    sentAt[i] = performance.now();
    text.insert(i, "x");
    writer.doc.commit();
    // Each edit leaves as its own update, as a typing user's would.
    await new Promise((r) => setImmediate(r));
  }
  await all;
  const elapsed = (performance.now() - start) / 1000;
  const serverCpuS = serverCpu(server) - cpuBefore;
  const clientCpu = process.cpuUsage(clientCpuBefore);
  await until("every edit acknowledged", () => unacked(writerClient) === 0, 60000);
  latencies.sort((a, b) => a - b);
  return {
    scenario: `1 writer, ${READERS} readers, ${EDITS} single-character edits${RATE ? ` at ${RATE}/s` : ""} (after ${WARMUP} warm-up edits)`,
    edits_per_s_delivered_to_all: Math.round(EDITS / elapsed),
    latency_ms_p50: Number(percentile(latencies, 50).toFixed(1)),
    latency_ms_p99: Number(percentile(latencies, 99).toFixed(1)),
    deliveries: latencies.length,
    seconds: Number(elapsed.toFixed(2)),
    server_cpu_s: Number(serverCpuS.toFixed(2)),
    clients_cpu_s: Number(((clientCpu.user + clientCpu.system) / 1e6).toFixed(2)),
  };
}

/** The same scenario with the readers spread over worker threads, so the
 * figure is not bounded by one JavaScript thread importing for 50 readers. */
async function fanOutThreads(server) {
  const writerClient = await connect(server);
  const writer = await joinDoc(writerClient, "bench-threads");
  const per = Math.ceil(READERS / WORKERS);
  const workers = [];
  for (let w = 0; w < WORKERS; w++) {
    const count = Math.min(per, READERS - w * per);
    const worker = new Worker(new URL("./readers.mjs", import.meta.url), {
      workerData: { url: server.url, room: "bench-threads", count, edits: EDITS },
      env: process.env,
    });
    const ready = new Promise((r) => worker.once("message", r));
    const done = new Promise((r) => worker.on("message", (m) => m.done && r(m.done)));
    workers.push({ worker, ready, done });
  }
  await Promise.all(workers.map((w) => w.ready));
  // The workers do not report the warm-up; a moment lets it arrive.
  let warmed = false;
  setTimeout(() => (warmed = true), 1000);
  await warmUp(writer.doc, () => warmed);
  const sentAt = new Array(EDITS);
  const text = writer.doc.getText("t");
  const cpuBefore = serverCpu(server);
  const start = performance.now();
  for (let i = 0; i < EDITS; i++) {
    if (RATE > 0) {
      const wait = start + (i * 1000) / RATE - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    }
    sentAt[i] = performance.timeOrigin + performance.now();
    text.insert(i, "x");
    writer.doc.commit();
    await new Promise((r) => setImmediate(r));
  }
  const arrivals = (await Promise.all(workers.map((w) => w.done))).flat();
  const last = Math.max(...arrivals.map((a) => a[EDITS - 1]));
  const elapsed = (last - (performance.timeOrigin + start)) / 1000;
  const latencies = arrivals.flatMap((a) => a.map((at, i) => at - sentAt[i])).sort((a, b) => a - b);
  const serverCpuS = serverCpu(server) - cpuBefore;
  await Promise.all(workers.map((w) => w.worker.terminate()));
  return {
    scenario: `1 writer, ${READERS} readers in ${WORKERS} threads, ${EDITS} edits${RATE ? ` at ${RATE}/s` : ""} (after ${WARMUP} warm-up edits)`,
    edits_per_s_delivered_to_all: Math.round(EDITS / elapsed),
    latency_ms_p50: Number(percentile(latencies, 50).toFixed(1)),
    latency_ms_p99: Number(percentile(latencies, 99).toFixed(1)),
    deliveries: latencies.length,
    server_cpu_s: Number(serverCpuS.toFixed(2)),
  };
}

async function manyRooms(server) {
  const client = await connect(server);
  const start = performance.now();
  await Promise.all(Array.from({ length: ROOMS }, (_, i) => joinDoc(client, `room-${i}`)));
  const elapsed = (performance.now() - start) / 1000;
  return { scenario: `1 client joins ${ROOMS} rooms`, seconds: Number(elapsed.toFixed(3)) };
}

const server = await new Server().start();
try {
  console.log(JSON.stringify(WORKERS > 0 ? await fanOutThreads(server) : await fanOut(server)));
  closeAll();
  console.log(JSON.stringify(await manyRooms(server)));
} finally {
  closeAll();
  await server.stop();
}
