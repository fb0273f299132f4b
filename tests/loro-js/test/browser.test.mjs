// The pad (web/) in two headless Chromium pages, served by `docweave serve --web`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { mkdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Server, until } from "../lib/helpers.mjs";
import { buildPad } from "../web/build.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
let server;
let browser;

before(async () => {
  const dist = await buildPad();
  server = await new Server(["--web", dist]).start();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function openPad(name) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`http://${server.httpAddr}/?ws=ws://${server.addr}/loro&room=pad&name=${name}`);
  await page.waitForFunction(() => window.pad?.ready, null, { timeout: 20000 }).catch((e) => {
    throw new Error(`${name} never got ready: ${errors.join("; ")} ${e}`);
  });
  return page;
}

const shown = (page) => page.locator("#text").inputValue();

test("typing in one page appears in the other; a reload keeps it; a native edit reaches both", async () => {
  const a = await openPad("ann");
  const b = await openPad("bob");
  await until("each page sees the other in its presence list", async () => {
    const [pa, pb] = await Promise.all([a.evaluate(() => window.pad.peers()), b.evaluate(() => window.pad.peers())]);
    return pa.includes("bob") && pb.includes("ann");
  });
  await a.locator("#text").pressSequentially("hello", { delay: 10 });
  await until("b shows a's typing", async () => (await shown(b)) === "hello");

  await b.reload();
  await b.waitForFunction(() => window.pad?.ready, null, { timeout: 20000 });
  assert.equal(await shown(b), "hello");

  await server.cli("doc", "put", "{ws}", "pad", "--text", " world");
  await until("both pages show the native edit", async () => {
    const [ta, tb] = await Promise.all([shown(a), shown(b)]);
    return ta === "hello world" && tb === "hello world";
  });
});

test("the status page reloads itself and shows the server's figures; a screenshot is kept", async () => {
  const page = await browser.newPage();
  await page.goto(`http://${server.httpAddr}/status?refresh=1`);
  const table = async (id) => page.locator(`#${id}`).innerText().catch(() => "");
  await until("the server's figures are shown", async () => /store\s+answering/.test(await table("server")));
  assert.match(await table("server"), /connections\s+http \d+, http-session \d+, tcp \d+, websocket \d+/);
  await server.cli("doc", "put", "{ws}", "status-check", "k", "v");
  // No click, no script: the page reloads itself and lists the document.
  await until("the page lists the new document after reloading itself", async () =>
    (await table("documents")).includes("status-check"),
  );
  await until("the update shows in the figures", async () => /updates received\s+[1-9]/.test(await table("server")));
  const dir = process.env.DOCWEAVE_ARTIFACTS ?? tmpdir();
  mkdirSync(dir, { recursive: true });
  const shot = join(dir, "status-page.png");
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(statSync(shot).size > 1000, "the screenshot is empty");
  await page.close();
});
