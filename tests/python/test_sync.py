"""Python replicas (the `docweave` package, edited with `loro` from PyPI)
syncing through the real `docweave serve` binary. Run by
shell/cli/tests/python.rs with DOCWEAVE_BIN set."""

import asyncio
import os
import shutil
import re
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import docweave
import loro

BIN = os.environ["DOCWEAVE_BIN"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data: str, *extra: str):
        # The HTTP and TCP ports are picked free, then bound by the server:
        # another process may take one between the two (tests run side by
        # side), and the server then stops at once. It is started again on
        # other ports; what it said on its last try is in the failure.
        for _ in range(5):
            self.tcp = free_port()
            self.http = free_port()
            self.proc = subprocess.Popen(
                [BIN, "serve", "--data", data, "--listen", "127.0.0.1:0", "--http", f"127.0.0.1:{self.http}",
                 "--tcp", f"127.0.0.1:{self.tcp}", *extra],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            line = self.proc.stdout.readline()
            found = re.search(r"(wss?)://127\.0\.0\.1:(\d+)", line)
            if found:
                break
            self.proc.kill()
            _, said = self.proc.communicate()
        else:
            raise RuntimeError(f"docweave serve did not start: {said}")
        # Nobody reads its log: it must not fill the pipe and stop the server.
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        # A TLS certificate names localhost, not the address.
        host = "localhost" if found.group(1) == "wss" else "127.0.0.1"
        self.ws = f"{found.group(1)}://{host}:{found.group(2)}"

    def cli(self, *args: str) -> str:
        return subprocess.run([BIN, *args], check=True, capture_output=True, text=True).stdout

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def content(replica: docweave.Replica, doc: str) -> dict:
    d = loro.LoroDoc()
    d.import_(replica.export(doc))
    return d.get_deep_value()


def edit(key: str, value: str) -> bytes:
    """An update made with Python's own Loro."""
    d = loro.LoroDoc()
    d.get_map("root").insert(key, value)
    d.commit()
    return d.export(loro.ExportMode.Snapshot())


class Sync(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="docweave-py-")
        self.server = Server(os.path.join(self.dir, "server"))

    def tearDown(self):
        self.server.stop()
        # Tidying only: a leftover directory costs disk, not a result.
        shutil.rmtree(self.dir, ignore_errors=True)

    async def test_two_python_replicas_and_a_native_client_converge(self):
        a = docweave.Replica("py-a")
        b = docweave.Replica("py-b")
        for r in (a, b):
            await r.open("shared")
            await r.connect("127.0.0.1", self.server.tcp)
        a.apply("shared", edit("from-a", "1"))
        b.apply("shared", edit("from-b", "2"))
        self.server.cli("doc", "put", self.server.ws, "shared", "from-rust", "3")
        want = {"from-a": "1", "from-b": "2", "from-rust": "3"}
        for r in (a, b):
            await r.wait_for(lambda r=r: content(r, "shared").get("root") == want)
        self.assertEqual(content(a, "shared"), content(b, "shared"))
        native = self.server.cli("doc", "get", self.server.ws, "shared")
        for key in want:
            self.assertIn(key, native)
        await a.close()
        await b.close()

    async def test_an_offline_replica_keeps_its_edits_across_a_restart_and_syncs_them(self):
        db = os.path.join(self.dir, "offline.db")
        offline = docweave.Replica("py-offline", sqlite=db)
        await offline.open("notes")
        offline.apply("notes", edit("written", "offline"))
        await offline.close()

        again = docweave.Replica("py-offline", sqlite=db)
        await again.open("notes")
        self.assertEqual(content(again, "notes")["root"], {"written": "offline"})
        await again.connect("127.0.0.1", self.server.tcp)
        await again.wait_acknowledged("notes")
        self.assertIn("offline", self.server.cli("doc", "get", self.server.ws, "notes"))
        await again.close()


class Tokens(unittest.IsolatedAsyncioTestCase):
    async def test_a_replica_given_a_new_token_gets_in_with_it(self):
        workdir = tempfile.mkdtemp(prefix="docweave-py-")
        server = Server(os.path.join(workdir, "server"),
                        "--token", "right")
        try:
            r = docweave.Replica("py-token", token="wrong")
            await r.open("guarded")
            r.apply("guarded", edit("k", "by-token"))
            await r.connect("127.0.0.1", server.tcp)
            with self.assertRaises(Exception):
                await r.wait_acknowledged("guarded", timeout=2)
            r.set_token("right")
            await r.wait_acknowledged("guarded")
            got = server.cli("doc", "get", server.ws, "guarded", "--token", "right")
            self.assertIn("by-token", got)
            await r.close()
        finally:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)


class Tls(unittest.IsolatedAsyncioTestCase):
    """Certificates made by shell/cli/tests/python.rs (a test CA and a
    certificate for localhost)."""

    async def test_a_replica_syncs_over_tls_and_a_clear_text_one_gets_nowhere(self):
        import ssl
        ca, cert, key = (os.environ[k] for k in
                         ("DOCWEAVE_TEST_CA", "DOCWEAVE_TEST_CERT", "DOCWEAVE_TEST_KEY"))
        workdir = tempfile.mkdtemp(prefix="docweave-py-")
        server = Server(os.path.join(workdir, "server"),
                        "--tls-cert", cert, "--tls-key", key)
        try:
            r = docweave.Replica("py-tls")
            await r.open("secret")
            r.apply("secret", edit("k", "over-tls"))
            await r.connect("localhost", server.tcp, ssl=ssl.create_default_context(cafile=ca))
            await r.wait_acknowledged("secret")
            got = server.cli("doc", "get", server.ws, "secret", "--ca-file", ca)
            self.assertIn("over-tls", got)
            await r.close()
            plain = docweave.Replica("py-plain")
            await plain.open("other")
            plain.apply("other", edit("k", "in-clear"))
            await plain.connect("localhost", server.tcp)
            with self.assertRaises(Exception):
                await plain.wait_acknowledged("other", timeout=2)
            await plain.close()
        finally:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)


class PoisonFromAServer(unittest.IsolatedAsyncioTestCase):
    """A malicious server (run by shell/cli/tests/python.rs on
    DOCWEAVE_POISON_PORT) answers with Loro bytes that once aborted the
    process: the replica reports an error and keeps syncing."""

    async def test_poison_from_a_server_is_reported_and_the_replica_goes_on(self):
        replica = docweave.Replica("py-victim")
        await replica.open("notes")
        await replica.connect("127.0.0.1", int(os.environ["DOCWEAVE_POISON_PORT"]))
        await replica.wait_for(lambda: replica.changes("notes") > 0)
        self.assertTrue(any(doc == "notes" for doc, _ in replica.errors()), replica.errors())
        self.assertEqual(content(replica, "notes")["root"], {"after": "poison"})
        await replica.close()


if __name__ == "__main__":
    unittest.main()


class DocumentApi(unittest.TestCase):
    """``docweave.http``: the document API and webhook signatures, standard library only."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.server = Server(self.dir.name, "--token", "s3cret")

    def tearDown(self):
        self.server.stop()
        self.dir.cleanup()

    def test_a_backend_patches_posts_reads_and_lists_documents_over_http(self):
        from docweave.http import ApiError, Documents
        docs = Documents(f"http://127.0.0.1:{self.server.http}", token="s3cret")
        # The server starts listening on its HTTP port a little after its banner.
        for _ in range(100):
            try:
                docs.list()
                break
            except OSError:
                time.sleep(0.05)
        docs.patch("team/notes", [{"op": "insert_text", "path": ["body"], "text": "hello"}])
        version, state = docs.get("team/notes")
        self.assertEqual(state["body"], "hello")
        # A Loro update made in Python, answered once durable with the new version.
        d = loro.LoroDoc()
        d.import_(docs.snapshot("team/notes"))
        d.get_text("body").insert(5, " world")
        d.commit()
        after = docs.post_update("team/notes", d.export(loro.ExportMode.Snapshot()))
        self.assertIsNotNone(after)
        self.assertEqual(docs.get("team/notes")[1]["body"], "hello world")
        self.assertIsNotNone(docs.since("team/notes", version))
        self.assertIsNone(docs.since("team/notes", docs.get("team/notes")[0]))
        listed, _ = docs.list(prefix="team/")
        self.assertEqual([e["id"] for e in listed], ["team/notes"])
        with self.assertRaises(ApiError) as refused:
            Documents(f"http://127.0.0.1:{self.server.http}", token="wrong").get("team/notes")
        self.assertEqual(refused.exception.status, 401)
        with self.assertRaises(ApiError) as missing:
            docs.get("nothing-here")
        self.assertEqual(missing.exception.status, 404)

    def test_history_names_the_author_and_the_past_reads_and_restores(self):
        from docweave.http import Documents
        base = f"http://127.0.0.1:{self.server.http}"
        ann = Documents(base, token="s3cret", peer="ann")
        ben = Documents(base, token="s3cret", peer="ben")
        for _ in range(100):
            try:
                ann.list()
                break
            except OSError:
                time.sleep(0.05)
        ann.patch("story", [{"op": "insert_text", "path": ["body"], "text": "once"}],
                  message="begin")
        ben.patch("story", [{"op": "insert_text", "path": ["body"], "index": 4,
                             "text": " upon"}])
        entries, _ = ann.history("story")
        self.assertEqual([e["author"] for e in entries], ["ben", "ann"])
        self.assertEqual(entries[1]["message"], "begin")
        first = entries[1]["version"]
        self.assertEqual(ann.at("story", first)["body"], "once")
        changed = ann.diff("story", first)
        self.assertEqual(changed[0]["change"], [{"retain": 4}, {"insert": " upon"}])
        ann.restore("story", first)
        self.assertEqual(ann.get("story")[1]["body"], "once")
        self.assertEqual(ann.history("story")[0][0]["author"], "ann")

    def test_a_webhook_signature_verifies_only_with_its_secret_body_and_time(self):
        import hashlib, hmac
        from docweave.http import verify_webhook
        body = b'{"type": "document.changed"}'
        t = int(time.time())
        v1 = hmac.new(b"secret-secret-01", f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        signature = f"t={t},v1={v1}"
        self.assertTrue(verify_webhook(b"secret-secret-01", signature, body))
        self.assertFalse(verify_webhook(b"secret-secret-02", signature, body))
        self.assertFalse(verify_webhook(b"secret-secret-01", signature, body + b" "))
        self.assertFalse(verify_webhook(b"secret-secret-01", signature, body, now=t + 3600))
        self.assertFalse(verify_webhook(b"secret-secret-01", "garbage", body))


class ReadmeExample(unittest.TestCase):
    """The README's Python example, run as written (its port and file moved)."""

    def test_the_readme_example_runs_against_the_server(self):
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "..", "..", "README.md"), encoding="utf-8") as f:
            readme = f.read()
        section = readme[readme.index("**Python.**"):]
        code = section[section.index("```python") + len("```python"):]
        code = code[:code.index("```")]
        workdir = tempfile.mkdtemp(prefix="docweave-readme-")
        server = Server(os.path.join(workdir, "server"))
        try:
            code = code.replace("7880", str(server.tcp)).replace('"laptop.db"', repr(os.path.join(workdir, "laptop.db")))
            exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
            self.assertIn("Shopping", server.cli("doc", "get", server.ws, "notes"))
        finally:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
