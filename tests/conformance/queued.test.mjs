// queued.test.mjs - the emulator's queued ingestion (its data-management
// side over Azurite, emulators/dm.c) checked with Microsoft's Node.js
// SDK: azure-kusto-ingest's IngestClient (queued), its status queues
// (IngestStatusQueues). Not its status-table report (ReportMethod.Table):
// the SDK turns the table URL's path into a table name and escapes the
// account's '/' (devstoreaccount1%2Fingestionsstatus), which path-style
// storage (Azurite) cannot serve; test_python_queued.py checks the rows.
//
// Run by meson (`meson test conformance-node-queued`, through
// run_conformance.py) or by hand:
//   KADX_BIN=build/kadx node --test tests/conformance/queued.test.mjs
// Azurite (npm, pinned in package.json) and the emulator run on 127.0.0.1
// with free ports; both are stopped by PID at the end. Every wait is on a
// condition with a deadline.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { Client, KustoConnectionStringBuilder } from "azure-kusto-data";
import {
    IngestClient, IngestStatusQueues, DataFormat, StreamDescriptor, IngestionProperties, ReportLevel,
} from "azure-kusto-ingest";

const here = path.dirname(fileURLToPath(import.meta.url));
const KADX = process.env.KADX_BIN || path.join(here, "..", "..", "build", "kadx");
const AZURITE = path.join(here, "node_modules", ".bin", "azurite");
const TOKEN = "queued-conformance-token";
const DB = "leaderboard";
const DEADLINE_MS = 60000;

let azurite; // child processes
let emu;
let url; // the emulator's http://127.0.0.1:PORT
let client; // azure-kusto-data Client
let ingest; // azure-kusto-ingest IngestClient (queued)
let status; // IngestStatusQueues

// Starts a process and resolves with the matches of the wanted patterns in
// its output (each pattern once), or rejects on exit or after 60 s.
function startProc(cmd, args, patterns) {
    return new Promise((resolve, reject) => {
        const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        const timer = setTimeout(() => reject(new Error(`${cmd} did not start: ${out}`)), 60000);
        const check = (d) => {
            out += d;
            const ms = patterns.map((re) => out.match(re));
            if (ms.every((m) => m)) {
                clearTimeout(timer);
                p.removeAllListeners("exit");
                resolve({ p, ms });
            }
        };
        p.stdout.on("data", check);
        p.stderr.on("data", check);
        p.on("exit", (code) => reject(new Error(`${cmd} exited (${code}): ${out}`)));
    });
}

async function stopProc(p) {
    if (p && p.exitCode === null && p.signalCode === null) {
        const exited = once(p, "exit");
        p.kill("SIGTERM");
        const [code] = await exited;
        return code;
    }
    return p ? p.exitCode : null;
}

async function waitUntil(cond, what) {
    const end = Date.now() + DEADLINE_MS;
    for (;;) {
        if (await cond()) {
            return;
        }
        if (Date.now() > end) {
            const dm = await (await fetch(url + "/_emulator/dm")).text();
            throw new Error(`timed out waiting for ${what} (emulator: ${dm})`);
        }
        await new Promise((r) => setTimeout(r, 100));
    }
}

async function count() {
    const r = await client.execute(DB, "GamePlay | count");
    return [...r.primaryResults[0].rows()][0].Count;
}

// Waits for the next status message (success or failure queue). The Node
// SDK's message Id is not the descriptor's sourceId (it makes a new one for
// the uploaded blob), so a test ingests one batch at a time and takes the
// next report.
const pending = [];
async function nextReport() {
    await waitUntil(async () => {
        for (const [kind, q] of [["success", status.success], ["failure", status.failure]]) {
            for (const m of await q.pop(16)) {
                pending.push({ kind, m });
            }
        }
        return pending.length > 0;
    }, "a status message");
    return pending.shift();
}

function gameplay(n, start = 0) {
    const lines = [];
    for (let i = 0; i < n; i++) {
        lines.push(JSON.stringify({
            playerId: start + i, gameId: i % 5, win: i, stake: 10,
            eventTime: new Date(Date.UTC(2024, 4, 1, 10, 0, i % 60)).toISOString(),
        }));
    }
    return lines.join("\n") + "\n";
}

function props(extra = {}) {
    return new IngestionProperties({
        database: DB, table: "GamePlay", format: DataFormat.JSON,
        ingestionMappingReference: "gameplay_json_mapping",
        reportLevel: ReportLevel.FailuresAndSuccesses, ...extra,
    });
}

// Each call names its own source id: the status messages carry it.
async function ingestRows(n, start, extra = {}) {
    const sourceId = crypto.randomUUID();
    const desc = new StreamDescriptor(Readable.from([Buffer.from(gameplay(n, start))]), sourceId);
    const res = await ingest.ingestFromStream(desc, props(extra));
    return { sourceId, res };
}

before(async () => {
    const az = await startProc(AZURITE, ["--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1",
        "--tableHost", "127.0.0.1", "--blobPort", "0", "--queuePort", "0", "--tablePort", "0",
        "--inMemoryPersistence", "--extentMemoryLimit", "256", "--disableTelemetry"], [
        /Blob service is successfully listening at (http:\/\/127\.0\.0\.1:\d+)/,
        /Queue service is successfully listening at (http:\/\/127\.0\.0\.1:\d+)/,
        /Table service is successfully listening at (http:\/\/127\.0\.0\.1:\d+)/,
    ]);
    azurite = az.p;
    const [blob, queue, table] = az.ms.map((m) => m[1] + "/devstoreaccount1");
    const e = await startProc(KADX, ["adx-emulator", "--listen", "127.0.0.1:0", "--database", DB,
        "--auth", "token", "--static-token", TOKEN, "--storage-blob", blob, "--storage-queue", queue,
        "--storage-table", table], [/listening on (http:\/\/[0-9.]+:\d+)/]);
    emu = e.p;
    url = e.ms[0][1];
    client = new Client(KustoConnectionStringBuilder.withAccessToken(url, TOKEN));
    ingest = new IngestClient(KustoConnectionStringBuilder.withAccessToken(url, TOKEN));
    status = new IngestStatusQueues(ingest);
    await client.executeMgmt(DB, ".create table GamePlay (PlayerID: int, GameID: int, Win: long, Stake: int, EventTime: datetime)");
    await client.executeMgmt(DB, ".create table GamePlay ingestion json mapping 'gameplay_json_mapping' " +
        "'[{\"column\":\"PlayerID\",\"Properties\":{\"Path\":\"$.playerId\"}},{\"column\":\"GameID\",\"Properties\":{\"Path\":\"$.gameId\"}},'" +
        "'{\"column\":\"Win\",\"Properties\":{\"Path\":\"$.win\"}},{\"column\":\"Stake\",\"Properties\":{\"Path\":\"$.stake\"}},'" +
        "'{\"column\":\"EventTime\",\"Properties\":{\"Path\":\"$.eventTime\"}}]'");
});

after(async () => {
    client?.close();
    ingest?.close();
    try {
        assert.equal(await stopProc(emu), 0, "the emulator exits 0 on SIGTERM");
    } finally {
        await stopProc(azurite);
    }
});

test("queued ingest from a stream: rows and a success message", async () => {
    const before = await count();
    await ingestRows(40, 0);
    const { kind, m } = await nextReport();
    assert.equal(kind, "success");
    assert.equal(m.Table, "GamePlay");
    assert.equal(await count(), before + 40);
});

test("ingest-by tag with ingestIfNotExists: the resend is skipped", async () => {
    const tag = "node-" + crypto.randomUUID();
    const extra = { ingestByTags: [tag], ingestIfNotExists: [tag] };
    const before = await count();
    await ingestRows(15, 100, extra);
    assert.equal((await nextReport()).kind, "success");
    await ingestRows(15, 100, extra);
    const { kind, m } = await nextReport();
    assert.equal(kind, "failure");
    assert.equal(m.ErrorCode, "Skipped_IngestByTagAlreadyExists");
    assert.equal(await count(), before + 15, "stored once");
});
