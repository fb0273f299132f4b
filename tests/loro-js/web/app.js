// A collaborative text area: a Loro text and a presence list, synced with
// loro-websocket through `docweave serve` (ws://HOST:7878/loro by default;
// `?ws=URL&room=ID&name=NAME` to choose).
import { LoroDoc, EphemeralStore } from "loro-crdt";
import { LoroWebsocketClient } from "loro-websocket";
import { LoroAdaptor, LoroEphemeralAdaptor } from "loro-adaptors/loro";

const params = new URLSearchParams(location.search);
const url = params.get("ws") ?? `ws://${location.hostname}:7878/loro`;
const room = params.get("room") ?? "pad";
const name = params.get("name") ?? `guest-${Math.floor(Math.random() * 1e6)}`;
const auth = params.get("token");

const area = document.querySelector("#text");
const status = document.querySelector("#status");
const peers = document.querySelector("#peers");

const doc = new LoroDoc();
const text = doc.getText("text");
const presence = new EphemeralStore(30000);

function showText() {
  if (area.value === text.toString()) return;
  // Keep the caret where it was, as far as the text allows.
  const at = area.selectionStart;
  area.value = text.toString();
  area.selectionStart = area.selectionEnd = Math.min(at, area.value.length);
}

function showPeers() {
  const names = Object.keys(presence.getAllStates()).sort();
  peers.replaceChildren(...names.map((n) => Object.assign(document.createElement("li"), { textContent: n })));
}

doc.subscribe((e) => {
  if (e.by !== "local") showText();
});
presence.subscribe(showPeers);

area.addEventListener("input", () => {
  // `update` turns the whole new value into the smallest edit of the text.
  text.update(area.value);
  doc.commit();
});

const client = new LoroWebsocketClient({ url });
await client.waitConnected();
const authBytes = auth ? new TextEncoder().encode(auth) : undefined;
const joined = await client.join({ roomId: room, crdtAdaptor: new LoroAdaptor(doc), auth: authBytes });
await joined.waitForReachingServerVersion();
await client.join({ roomId: room, crdtAdaptor: new LoroEphemeralAdaptor(presence), auth: authBytes });
presence.set(name, { since: Date.now() });
showText();
showPeers();
area.disabled = false;
status.textContent = `editing "${room}" as ${name}`;
// For tests: what the page holds.
window.pad = { ready: true, text: () => text.toString(), peers: () => Object.keys(presence.getAllStates()) };
