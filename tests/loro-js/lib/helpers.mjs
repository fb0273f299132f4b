// Starts the real `docweave` binary and connects real loro-websocket clients.
import { spawn, execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import WebSocket from "ws";

// Node 20 has no global WebSocket; loro-websocket looks for one when it connects.
globalThis.WebSocket ??= WebSocket;

const { LoroWebsocketClient } = await import("loro-websocket");
const { LoroAdaptor, LoroEphemeralAdaptor, LoroPersistentStoreAdaptor } = await import(
  "loro-adaptors/loro"
);
const { LoroDoc, EphemeralStore } = await import("loro-crdt");
export { LoroDoc, EphemeralStore, LoroAdaptor, LoroEphemeralAdaptor, LoroPersistentStoreAdaptor };

export const BIN = process.env.DOCWEAVE_BIN;
if (!BIN) throw new Error("DOCWEAVE_BIN must name the docweave binary (cargo sets it in shell/cli/tests/loro_js.rs)");

/** A running `docweave serve`; `kill()` is SIGKILL, `restart()` reuses its data and port. */
export class Server {
  constructor(args = [], { files = {} } = {}) {
    this.dir = mkdtempSync(join(tmpdir(), "docweave-loro-"));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(this.dir, name), text);
    this.args = args.map((a) => a.replaceAll("{dir}", this.dir));
    this.listen = "127.0.0.1:0";
  }

  async start() {
    const child = spawn(
      BIN,
      ["serve", "--listen", this.listen, "--http", "127.0.0.1:0", "--data", join(this.dir, "data"), ...this.args],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } },
    );
    this.child = child;
    this.log = "";
    child.stderr.on("data", (d) => (this.log += d));
    const line = await new Promise((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`docweave did not start:\n${this.log}`)), 20000);
      child.stdout.on("data", (d) => {
        out += d;
        const m = out.match(/(wss?):\/\/(127\.0\.0\.1:\d+)\s+https?:\/\/(127\.0\.0\.1:\d+)/);
        if (m) {
          clearTimeout(timer);
          this.secure = m[1] === "wss";
          this.httpAddr = m[3];
          resolve(m[2]);
        }
      });
      child.on("exit", (code) => reject(new Error(`docweave exited ${code}:\n${this.log}`)));
    });
    this.addr = line;
    this.listen = line;
    // A TLS server's certificate names `localhost`, not its address.
    this.url = this.secure ? `wss://localhost:${line.split(":")[1]}/loro` : `ws://${line}/loro`;
    return this;
  }

  kill() {
    this.child.kill("SIGKILL");
    return new Promise((resolve) => this.child.once("exit", resolve));
  }

  async restart() {
    await this.kill();
    return this.start();
  }

  /** Kills the server for good and removes its data: each run's leftovers
   * would otherwise pile up in the system's temporary directory. */
  async stop() {
    // A server killed by a signal has no exit code, only a signal code:
    // waiting for its exit again would wait for ever.
    if (this.child.exitCode === null && this.child.signalCode === null) await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Runs the native docweave CLI against this server. */
  async cli(...args) {
    const url = (a) => a.replaceAll("{ws}", `ws://${this.addr}`).replaceAll("{http}", `http://${this.httpAddr}`);
    const { stdout } = await promisify(execFile)(BIN, args.map(url));
    return stdout;
  }
}

const clients = [];

/** A connected loro-websocket client. */
export async function connect(server, options = {}) {
  const client = new LoroWebsocketClient({ url: server.url, ...options });
  clients.push(client);
  // A connection that never opens (a refused certificate) fails the test
  // instead of hanging the suite.
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`could not connect to ${server.url} within 15 s`)), 15000);
  });
  try {
    await Promise.race([client.waitConnected(), late]);
  } finally {
    clearTimeout(timer);
  }
  return client;
}

/** Joins a document room; resolves once joined. */
export async function joinDoc(client, roomId, { doc = new LoroDoc(), auth, onUpdateError } = {}) {
  const adaptor = new LoroAdaptor(doc, { onUpdateError });
  const room = await client.join({
    roomId,
    crdtAdaptor: adaptor,
    auth: auth === undefined ? undefined : new TextEncoder().encode(auth),
  });
  return { doc, room, adaptor };
}

/** Batches sent and not yet acknowledged by the server. */
export function unacked(client) {
  return client.sentUpdateBatches.size;
}

export async function until(what, check, timeoutMs = 15000) {
  const start = Date.now();
  for (;;) {
    if (await check()) return;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function closeAll() {
  for (const c of clients.splice(0)) {
    try {
      c.destroy();
    } catch {}
  }
}
