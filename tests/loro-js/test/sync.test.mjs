// Real loro-websocket 0.6.2 clients syncing through `docweave serve` at ws://.../loro.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import {
  Server,
  connect,
  joinDoc,
  unacked,
  until,
  closeAll,
  LoroDoc,
  EphemeralStore,
  LoroEphemeralAdaptor,
  LoroPersistentStoreAdaptor,
} from "../lib/helpers.mjs";

const servers = [];
async function server(args, opts) {
  const s = await new Server(args, opts).start();
  servers.push(s);
  return s;
}

after(async () => {
  closeAll();
  for (const s of servers) await s.stop();
});

test("two clients converge on text, map and list edits", async () => {
  const s = await server();
  const a = await joinDoc(await connect(s), "shared");
  const b = await joinDoc(await connect(s), "shared");
  a.doc.getText("text").insert(0, "hello");
  a.doc.getMap("map").set("from", "a");
  a.doc.commit();
  b.doc.getList("list").push(1);
  b.doc.getMap("map").set("also", "b");
  b.doc.commit();
  await until("both to hold every edit", () => {
    const [x, y] = [a.doc.toJSON(), b.doc.toJSON()];
    return isDeepStrictEqual(x, y) && x.text === "hello" && x.list?.length === 1 && x.map?.also === "b";
  });
  assert.deepEqual(a.doc.toJSON(), b.doc.toJSON());
});

test("clients over wss:// (TLS terminated by docweave) converge, and the native CLI reads the same", async () => {
  const tls = process.env.DOCWEAVE_TLS_DIR;
  assert.ok(tls, "DOCWEAVE_TLS_DIR must hold cert.pem and key.pem (shell/cli/tests/loro_js.rs makes them)");
  const s = await server(["--tls-cert", `${tls}/cert.pem`, "--tls-key", `${tls}/key.pem`]);
  assert.ok(s.url.startsWith("wss://"), s.url);
  const a = await joinDoc(await connect(s), "over-tls");
  const b = await joinDoc(await connect(s), "over-tls");
  a.doc.getText("text").insert(0, "sealed");
  a.doc.commit();
  await until("b to hold a's edit", () => b.doc.getText("text").toString() === "sealed");
  const port = s.addr.split(":")[1];
  const out = await s.cli("doc", "get", `wss://localhost:${port}`, "over-tls", "--ca-file", `${tls}/ca.pem`);
  assert.match(out, /sealed/);
});

test("a late joiner gets the full document, and every batch is acknowledged", async () => {
  const s = await server();
  const writer = await connect(s);
  const a = await joinDoc(writer, "late");
  for (let i = 0; i < 20; i++) {
    a.doc.getText("text").insert(i, String(i % 10));
    a.doc.commit();
  }
  await until("every batch acknowledged", () => unacked(writer) === 0);
  const late = await joinDoc(await connect(s), "late");
  await late.room.waitForReachingServerVersion();
  assert.equal(late.doc.getText("text").toString(), a.doc.getText("text").toString());
});

test("acknowledged edits survive SIGKILL; a reconnecting client rejoins and syncs", async () => {
  const s = await server();
  const writer = await connect(s, { reconnect: { enabled: true, initialDelayMs: 50, maxDelayMs: 200 } });
  const a = await joinDoc(writer, "durable");
  a.doc.getMap("m").set("before", "kill");
  a.doc.commit();
  await until("the edit acknowledged", () => unacked(writer) === 0);
  await s.restart();
  const fresh = await joinDoc(await connect(s), "durable");
  await fresh.room.waitForReachingServerVersion();
  assert.equal(fresh.doc.getMap("m").get("before"), "kill");
  // The first client reconnects on its own and its next edit arrives.
  await until("the writer reconnected", () => writer.getStatus() === "connected");
  a.doc.getMap("m").set("after", "restart");
  a.doc.commit();
  await until("the edit after the restart", () => fresh.doc.getMap("m").get("after") === "restart");
});

test("a read-only client's write is refused and a wrong token is refused", async () => {
  const rules = {
    rules: [
      {
        peer: { Prefix: "reader-" },
        doc: "Any",
        access: { read: true, write: false, create: false, delete: false },
      },
    ],
    default: { read: true, write: true, create: true, delete: true },
  };
  const s = await server(["--token", "writer-*=wsecret", "--token", "reader-*=rsecret", "--rules", "{dir}/rules.json"], {
    files: { "rules.json": JSON.stringify(rules) },
  });
  const w = await joinDoc(await connect(s), "guarded", { auth: "wsecret" });
  w.doc.getText("text").insert(0, "by the writer");
  w.doc.commit();
  const errors = [];
  const readerClient = await connect(s);
  const r = await joinDoc(readerClient, "guarded", {
    auth: "rsecret",
    onUpdateError: (_updates, code) => errors.push(code),
  });
  await until("the reader sees the writer's text", () => r.doc.getText("text").toString() === "by the writer");
  r.doc.getText("text").insert(0, "not allowed ");
  r.doc.commit();
  await until("the reader's write refused", () => errors.length > 0);
  assert.equal(errors[0], 3, "permission_denied");
  await new Promise((res) => setTimeout(res, 200));
  assert.equal(w.doc.getText("text").toString(), "by the writer");

  const intruder = await connect(s);
  await assert.rejects(joinDoc(intruder, "guarded", { auth: "wrong" }), /Join failed: 2/);
});

test("presence arrives and leaves", async () => {
  const s = await server();
  const join = async () => {
    const client = await connect(s);
    const store = new EphemeralStore(30000);
    await client.join({ roomId: "cursors", crdtAdaptor: new LoroEphemeralAdaptor(store) });
    return store;
  };
  const a = await join();
  const b = await join();
  a.set("alice", { cursor: 7 });
  await until("b sees a's cursor", () => b.get("alice")?.cursor === 7);
  a.delete("alice");
  await until("b sees it gone", () => b.get("alice") === undefined);
});

test("presence (%EPH) goes with its member; persisted presence (%EPS) is kept for later members", async () => {
  const s = await server();
  const join = async (Adaptor, roomId) => {
    const client = await connect(s);
    const store = new EphemeralStore(30000);
    await client.join({ roomId, crdtAdaptor: new Adaptor(store) });
    return { client, store };
  };
  const cursor = await join(LoroEphemeralAdaptor, "board");
  const state = await join(LoroPersistentStoreAdaptor, "board");
  const watcher = await join(LoroPersistentStoreAdaptor, "board");
  cursor.store.set("alice", { cursor: 3 });
  // Two keys, set one after the other: the client sends each change alone.
  state.store.set("layout", { columns: 2 });
  state.store.set("theme", "dark");
  await until("a member sees the persisted state", () => watcher.store.get("theme") === "dark");
  // Both setters leave.
  cursor.client.destroy();
  state.client.destroy();
  await new Promise((r) => setTimeout(r, 300));
  const lateCursor = await join(LoroEphemeralAdaptor, "board");
  const lateState = await join(LoroPersistentStoreAdaptor, "board");
  await until(
    "a later member gets the whole persisted state",
    () => lateState.store.get("layout")?.columns === 2 && lateState.store.get("theme") === "dark",
  );
  assert.equal(lateCursor.store.get("alice"), undefined, "presence of a member who left is not kept");
});

test("%EPH presence goes when its member leaves the room, also on a connection that stays", async () => {
  const s = await server();
  const join = async (client) => {
    const store = new EphemeralStore(30000);
    const room = await client.join({ roomId: "leaving", crdtAdaptor: new LoroEphemeralAdaptor(store) });
    return { store, room };
  };
  const leaverClient = await connect(s);
  const leaver = await join(leaverClient);
  const stayer = await join(await connect(s));
  leaver.store.set("alice", { cursor: 3 });
  await until("the other member sees alice", () => stayer.store.get("alice")?.cursor === 3);
  await leaver.room.leave();
  await until("the other member sees alice gone", () => stayer.store.get("alice") === undefined);
  // The leaver's connection stays, and serves another room.
  const after = await joinDoc(leaverClient, "leaving-doc");
  after.doc.getText("t").insert(0, "still connected");
  after.doc.commit();
  await until("acknowledged", () => unacked(leaverClient) === 0);
  const late = await join(await connect(s));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(late.store.get("alice"), undefined, "a later member was shown a member who left");
});

test("document ids apps use (URLs, slashes, dots) round-trip between Loro and native clients", async () => {
  const s = await server();
  const ids = ["https://example.com/docs/x", "notes/", "/notes", "a/./b", "../up", "ünï côde"];
  for (const id of ids) {
    const a = await joinDoc(await connect(s), id);
    a.doc.getMap("root").set("from-loro", id);
    a.doc.commit();
    await s.cli("doc", "put", "{ws}", id, "from-native", "yes");
    await until(`the native edit of ${id}`, () => a.doc.getMap("root").get("from-native") === "yes");
    const got = JSON.parse(await s.cli("doc", "get", "{http}", id));
    assert.equal(got.root["from-loro"], id);
  }
  // Past the protocol's 128 bytes: a clear join error, and the connection goes on.
  const client = await connect(s);
  const { encode, decode, CrdtType, MessageType } = await import("loro-protocol");
  const answers = [];
  client.socket.addEventListener("message", (e) => {
    if (typeof e.data !== "string") answers.push(decode(new Uint8Array(e.data)));
  });
  const long = "x".repeat(129);
  // loro-protocol's encoder refuses such an id, so the bytes are written by hand.
  const room = new TextEncoder().encode(long);
  const frame = new Uint8Array([...new TextEncoder().encode("%LOR"), 129, 1, ...room, 0, 0, 0]);
  client.socket.send(frame);
  await until("a join error", () => answers.some((m) => m.type === MessageType.JoinError));
  assert.match(answers.find((m) => m.type === MessageType.JoinError).message, /at most 128/);
  const still = await joinDoc(client, "after-long-id");
  still.doc.getText("t").insert(0, "ok");
  still.doc.commit();
  await until("acknowledged", () => unacked(client) === 0);
  void encode;
  void CrdtType;
});

test("a 5 MB update crosses as fragments both ways", async () => {
  const s = await server();
  const writer = await connect(s);
  const a = await joinDoc(writer, "big");
  const b = await joinDoc(await connect(s), "big");
  const chunk = "abcdefghij".repeat(1000);
  let text = "";
  for (let i = 0; i < 500; i++) text += chunk;
  a.doc.getText("text").insert(0, text);
  a.doc.commit();
  await until("the big edit acknowledged", () => unacked(writer) === 0, 60000);
  await until("b holds 5 MB", () => b.doc.getText("text").length === text.length, 60000);
  const late = await joinDoc(await connect(s), "big");
  await late.room.waitForReachingServerVersion();
  assert.equal(late.doc.getText("text").length, text.length);
});

test("a native docweave client and a loro-websocket client converge", async () => {
  const s = await server();
  const a = await joinDoc(await connect(s), "mixed");
  a.doc.getMap("root").set("from-loro", "yes");
  a.doc.commit();
  await s.cli("doc", "put", "{ws}", "mixed", "from-native", "yes");
  await until("the native edit reaches the loro client", () => a.doc.getMap("root").get("from-native") === "yes");
  const got = JSON.parse(await s.cli("doc", "get", "{ws}", "mixed"));
  assert.equal(got.root["from-loro"], "yes");
  assert.equal(got.root["from-native"], "yes");
});

test("rooms of other CRDTs are refused with a clear message, and the connection goes on", async () => {
  const s = await server();
  const client = await connect(s);
  const { encode, decode, CrdtType, MessageType } = await import("loro-protocol");
  const answers = [];
  client.socket.addEventListener("message", (e) => {
    if (typeof e.data !== "string") answers.push(decode(new Uint8Array(e.data)));
  });
  client.socket.send(
    encode({ type: MessageType.JoinRequest, crdt: CrdtType.Yjs, roomId: "y", auth: new Uint8Array(), version: new Uint8Array() }),
  );
  await until("a join error", () => answers.some((m) => m.type === MessageType.JoinError));
  assert.match(answers.find((m) => m.type === MessageType.JoinError).message, /not supported/);
  const a = await joinDoc(client, "after-yjs");
  a.doc.getText("t").insert(0, "still here");
  a.doc.commit();
  await until("acknowledged", () => unacked(client) === 0);
});

test("a text ping is answered with pong", async () => {
  const s = await server();
  const client = await connect(s);
  await client.ping(5000);
});

test("an update missing its dependencies gets rejoin_suggested, and the rejoin fills the gap", async () => {
  const s = await server();
  const client = await connect(s);
  const a = await joinDoc(client, "gap");
  // Two changes the server never saw, imported (not made) here, so the
  // adaptor does not send them by itself.
  const source = new LoroDoc();
  source.getText("text").insert(0, "a");
  source.commit();
  const first = source.version();
  source.getText("text").insert(1, "b");
  source.commit();
  a.doc.import(source.export({ mode: "snapshot" }));
  // Only the second arrives at the server: it depends on the first.
  client.sendExternalUpdates("%LOR", "gap", [source.export({ mode: "update", from: first })]);
  const late = await joinDoc(await connect(s), "gap");
  await until("the rejoin brought the server both changes", () => late.doc.getText("text").toString() === "ab");
});
