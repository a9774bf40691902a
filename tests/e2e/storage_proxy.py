"""storage_proxy.py - an Azure Storage fault proxy for queued-ingestion
tests: it sits between kadx and Azurite and breaks some requests.

    az = azurite.Azurite().start()
    px = storage_proxy.StorageProxy(az).start()
    emu = adx.Emulator(extra=px.emulator_args()).start()
    px.plan(every=7, kinds=storage_proxy.KINDS)
    ...
    px.counts  # {"busy503": n, "error500": n, ...}
    px.stop()

One listener per Azurite service (blob, queue, table) on 127.0.0.1, port 0.
The emulator hands out SAS URLs with the proxy's bases
(--storage-public-blob/queue/table) and maps them back to Azurite for its
own worker, so only the client's (kadx's) calls pass here.

Every request is read whole (an `Expect: 100-continue` is answered), then
either forwarded to Azurite on a fresh connection (`Connection: close` both
ways: one request per connection) or answered with a fault. The plan: every
`every`-th request is due a fault, the next kind of `kinds` in turn; a kind
that does not apply to that request (reset_after applies only to Put Blob,
Put Block, Put Block List and Put Message) waits for the next request it
applies to. Kinds:

- busy503: 503 with Azure's XML error body, code ServerBusy
- error500: 500, code InternalError
- auth403: 403, code AuthenticationFailed
- reset: the connection reset (RST) before any answer; nothing forwarded
- reset_after: forwarded, Azurite's answer read (the write happened), then
  the connection reset: the client does not learn it (the ambiguous case)

Loopback only; asyncio on its own thread; stop() closes everything.
"""
import asyncio
import socket
import struct
import threading
import urllib.parse
import uuid

KINDS = ("busy503", "error500", "auth403", "reset", "reset_after")

_ERRORS = {
    "busy503": (503, "Server Busy", "ServerBusy",
                "The server is currently unable to receive requests. "
                "Please retry your request."),
    "error500": (500, "Internal Server Error", "InternalError",
                 "The server encountered an internal error. Please retry "
                 "the request."),
    "auth403": (403, "Server failed to authenticate the request. Make sure "
                "the value of Authorization header is formed correctly "
                "including the signature.", "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the "
                "value of Authorization header is formed correctly "
                "including the signature."),
}


def _is_write(service, method, target):
    """Put Blob / Put Block / Put Block List, Put Message."""
    path = urllib.parse.urlsplit(target).path
    if service == "blob":
        return method == "PUT"
    if service == "queue":
        return method == "POST" and path.rstrip("/").endswith("/messages")
    return False


class StorageProxy:
    def __init__(self, azurite):
        self.az = azurite
        self.urls = {}
        self.counts = {k: 0 for k in KINDS}
        self.requests = 0
        self.forwarded = 0
        self.writes = 0
        self.ops = {"put_blob": 0, "put_block": 0, "put_block_list": 0}
        self._lock = threading.Lock()
        self._every = 0
        self._kinds = ()
        self._next = 0
        self._due = False
        self._loop = None
        self._thread = None
        self._servers = []

    # ---- control (any thread)

    def plan(self, every=0, kinds=KINDS):
        """every-th request is due a fault (0: none), kinds in turn."""
        with self._lock:
            self._every = every
            self._kinds = tuple(kinds)
            self._next = 0
            self._due = False

    def snapshot(self):
        with self._lock:
            return dict(self.counts, requests=self.requests,
                        forwarded=self.forwarded, writes=self.writes,
                        **self.ops)

    def emulator_args(self):
        return self.az.emulator_args() + [
            "--storage-public-blob", self.urls["blob"],
            "--storage-public-queue", self.urls["queue"],
            "--storage-public-table", self.urls["table"]]

    # ---- lifecycle

    def start(self, timeout=10.0):
        ready = threading.Event()
        err = []

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._listen())
            except Exception as e:  # reported by start()
                err.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True,
                                        name="storage-proxy")
        self._thread.start()
        if not ready.wait(timeout) or err:
            raise AssertionError("storage proxy did not start: %r" % err)
        return self

    def stop(self):
        if self._loop is None:
            return

        async def close():
            for s in self._servers:
                s.close()
            for t in [t for t in asyncio.all_tasks()
                      if t is not asyncio.current_task()]:
                t.cancel()

        fut = asyncio.run_coroutine_threadsafe(close(), self._loop)
        try:
            fut.result(5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop = None

    async def _listen(self):
        for svc, base in (("blob", self.az.blob), ("queue", self.az.queue),
                          ("table", self.az.table)):
            u = urllib.parse.urlsplit(base)

            def handler(r, w, svc=svc, up=(u.hostname, u.port)):
                return self._serve(svc, up, r, w)

            srv = await asyncio.start_server(handler, "127.0.0.1", 0)
            self._servers.append(srv)
            port = srv.sockets[0].getsockname()[1]
            self.urls[svc] = "http://127.0.0.1:%d%s" % (port, u.path)

    # ---- one connection, one request

    def _pick(self, svc, method, target):
        with self._lock:
            self.requests += 1
            write = _is_write(svc, method, target)
            if write:
                self.writes += 1
            if svc == "blob" and method == "PUT":
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
                op = {"block": "put_block", "blocklist": "put_block_list"}.get(
                    q.get("comp", [""])[0], "put_blob")
                self.ops[op] += 1
            if self._every <= 0 or not self._kinds:
                return None
            if self.requests % self._every == 0:
                self._due = True
            if not self._due:
                return None
            kind = self._kinds[self._next % len(self._kinds)]
            if kind == "reset_after" and not write:
                return None  # waits for a write
            self._due = False
            self._next += 1
            self.counts[kind] += 1
            return kind

    @staticmethod
    def _reset(writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                struct.pack("ii", 1, 0))
            except OSError:
                pass
        writer.transport.abort()

    async def _serve(self, svc, upstream, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            hdrs = []
            for ln in lines[1:]:
                if ln:
                    k, v = ln.split(":", 1)
                    hdrs.append((k.strip(), v.strip()))
            low = {k.lower(): v for k, v in hdrs}
            if low.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await writer.drain()
            if "chunked" in low.get("transfer-encoding", "").lower():
                body = b""
                while True:
                    size = int((await reader.readline()).split(b";")[0], 16)
                    if size == 0:
                        await reader.readuntil(b"\r\n")
                        break
                    body += await reader.readexactly(size)
                    await reader.readexactly(2)
            else:
                body = await reader.readexactly(
                    int(low.get("content-length", "0")))
            kind = self._pick(svc, method, target)
            if kind == "reset":
                self._reset(writer)
                return
            if kind in _ERRORS:
                st, text, code, msg = _ERRORS[kind]
                rid = str(uuid.uuid4())
                xml = ('<?xml version="1.0" encoding="utf-8"?><Error><Code>%s'
                       '</Code><Message>%s\nRequestId:%s\nTime:'
                       '2026-12-06T00:00:00.0000000Z</Message></Error>'
                       % (code, msg, rid)).encode()
                writer.write((
                    "HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\n"
                    "Content-Length: %d\r\nx-ms-error-code: %s\r\n"
                    "x-ms-request-id: %s\r\nx-ms-version: 2019-12-12\r\n"
                    "Connection: close\r\n\r\n"
                    % (st, text if st != 403 else "Forbidden", len(xml),
                       code, rid)).encode() + xml)
                await writer.drain()
                writer.close()
                return
            ur, uw = await asyncio.open_connection(*upstream)
            out = ["%s %s HTTP/1.1" % (method, target)]
            for k, v in hdrs:
                if k.lower() in ("host", "connection", "expect",
                                 "transfer-encoding", "content-length",
                                 "keep-alive"):
                    continue
                out.append("%s: %s" % (k, v))
            out += ["Host: %s:%d" % upstream, "Content-Length: %d" % len(body),
                    "Connection: close", "", ""]
            uw.write("\r\n".join(out).encode("latin-1") + body)
            await uw.drain()
            rhead = await ur.readuntil(b"\r\n\r\n")
            rest = await ur.read()
            uw.close()
            with self._lock:
                self.forwarded += 1
            if kind == "reset_after":
                self._reset(writer)  # Azurite did it; the client never learns
                return
            rl = rhead.decode("latin-1").split("\r\n")
            keep = [ln for ln in rl[1:] if ln and not
                    ln.lower().startswith(("connection:", "keep-alive:"))]
            writer.write("\r\n".join([rl[0]] + keep + ["Connection: close",
                                                       "", ""])
                         .encode("latin-1") + rest)
            await writer.drain()
            writer.close()
        except (asyncio.IncompleteReadError, OSError, ValueError,
                asyncio.LimitOverrunError):
            # the client went away (killed), or Azurite did: no answer
            writer.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
