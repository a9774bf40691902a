// emulator.test.mjs - conformance of the kadx ADX emulator, checked with
// Microsoft's own Node.js SDKs (azure-kusto-data, azure-kusto-ingest, pinned
// by package-lock.json) as the client: create the seed's table, mapping and
// streaming policy; ingest GamePlay rows through the SDK's streaming client
// (gzip, chunked); query them back in v1 and v2; and see the SDK report a
// 429 (ThrottlingError) and a permanent error as it does against ADX.
//
// Run by meson (`meson test conformance`) or by hand:
//   KADX_BIN=build/kadx node --test tests/conformance/
// Loopback only; the emulator runs with --auth token so the bearer path of
// the SDK is exercised too. The emulator process is killed by PID at exit.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { Client, KustoConnectionStringBuilder, ClientRequestProperties } from "azure-kusto-data";
import { StreamingIngestClient, DataFormat, IngestionProperties } from "azure-kusto-ingest";

const here = path.dirname(fileURLToPath(import.meta.url));
const KADX = process.env.KADX_BIN || path.join(here, "..", "..", "build", "kadx");
const TOKEN = "conformance-static-token";
const DB = "leaderboard";

let emu; // the child process
let url; // http://127.0.0.1:PORT
let client; // azure-kusto-data Client
let ingest; // azure-kusto-ingest StreamingIngestClient

// Starts the emulator and resolves with its URL from the listening line.
function startEmulator() {
    return new Promise((resolve, reject) => {
        const p = spawn(KADX, ["adx-emulator", "--listen", "127.0.0.1:0", "--database", DB,
            "--auth", "token", "--static-token", TOKEN], { stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        let err = "";
        const timer = setTimeout(() => reject(new Error("emulator did not start: " + err)), 30000);
        p.stderr.on("data", (d) => { err += d; });
        p.stdout.on("data", (d) => {
            out += d;
            const m = out.match(/listening on (http:\/\/[0-9.]+:\d+)/);
            if (m) {
                clearTimeout(timer);
                resolve({ p, url: m[1] });
            }
        });
        p.on("exit", (code) => reject(new Error(`emulator exited (${code}): ${err}`)));
    });
}

// The emulator's control endpoint (not part of the ADX protocol).
async function control(pathname, body) {
    const r = await fetch(url + pathname, body === undefined ? {} : {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    assert.equal(r.status, 200, await r.clone().text());
    return r.json();
}

function gameplay(n, start = 0) {
    const lines = [];
    for (let i = 0; i < n; i++) {
        lines.push(JSON.stringify({
            playerId: start + i, gameId: i % 5, win: i * 3, stake: 10,
            eventTime: new Date(Date.UTC(2024, 4, 1, 10, 0, i % 60)).toISOString(),
        }));
    }
    return lines.join("\n") + "\n";
}

function ingestProps() {
    return new IngestionProperties({
        database: DB, table: "GamePlay", format: DataFormat.JSON,
        ingestionMappingReference: "gameplay_json_mapping",
    });
}

before(async () => {
    const started = await startEmulator();
    emu = started.p;
    url = started.url;
    const kcsb = KustoConnectionStringBuilder.withAccessToken(url, TOKEN);
    client = new Client(kcsb);
    ingest = new StreamingIngestClient(KustoConnectionStringBuilder.withAccessToken(url, TOKEN));
});

after(async () => {
    client?.close();
    ingest?.close();
    if (emu && emu.exitCode === null) {
        emu.removeAllListeners("exit");
        const exited = once(emu, "exit");
        emu.kill("SIGTERM");
        const [code] = await exited;
        assert.equal(code, 0, "the emulator exits 0 on SIGTERM");
    }
});

test("seed setup through executeMgmt", async () => {
    await client.executeMgmt(DB, ".create table GamePlay (PlayerID: int, GameID: int, Win: long, Stake: int, EventTime: datetime)");
    await client.executeMgmt(DB, ".create table GamePlay ingestion json mapping 'gameplay_json_mapping' " +
        "'[{\"column\":\"PlayerID\",\"Properties\":{\"Path\":\"$.playerId\"}},{\"column\":\"GameID\",\"Properties\":{\"Path\":\"$.gameId\"}},'" +
        "'{\"column\":\"Win\",\"Properties\":{\"Path\":\"$.win\"}},{\"column\":\"Stake\",\"Properties\":{\"Path\":\"$.stake\"}},'" +
        "'{\"column\":\"EventTime\",\"Properties\":{\"Path\":\"$.eventTime\"}}]'");
    await client.executeMgmt(DB, `.alter database ${DB} policy streamingingestion enable`);
    const tables = await client.executeMgmt(DB, ".show tables");
    const names = [...tables.primaryResults[0].rows()].map((r) => r.TableName);
    assert.ok(names.includes("GamePlay"), JSON.stringify(names));
    const maps = await client.executeMgmt(DB, ".show table GamePlay ingestion json mappings");
    assert.equal([...maps.primaryResults[0].rows()][0].Name, "gameplay_json_mapping");
});

test("streaming ingest with the SDK's StreamingIngestClient", async () => {
    const res = await ingest.ingestFromStream(Readable.from([gameplay(40)]), ingestProps());
    assert.ok(res, "the SDK returns a result");
    const stats = await control("/_emulator/stats");
    assert.equal(stats.tables[`${DB}.GamePlay`], 40);
});

test("query back in v2 (execute) and v1 (executeQueryV1)", async () => {
    const v2 = await client.execute(DB, "GamePlay | count");
    assert.equal(v2.version, "2.0");
    assert.equal([...v2.primaryResults[0].rows()][0].Count, 40);
    const rows = await client.execute(DB, "GamePlay | where PlayerID == 7 | project PlayerID, Win, EventTime");
    const r = [...rows.primaryResults[0].rows()][0];
    assert.equal(r.PlayerID, 7);
    assert.equal(r.Win, 21);
    assert.ok(r.EventTime instanceof Date);
    assert.equal(r.EventTime.toISOString(), "2024-05-01T10:00:07.000Z");
    const props = new ClientRequestProperties();
    props.setOption("servertimeout", 60000);
    const v1 = await client.executeQueryV1(DB, "GamePlay | count", props);
    assert.equal(v1.version, "1.0");
    assert.equal([...v1.primaryResults[0].rows()][0].Count, 40);
});

test("a 429 is reported as ThrottlingError", async () => {
    await control("/_emulator/faults", { fail_count: 1, fail_status: 429 });
    await assert.rejects(
        ingest.ingestFromStream(Readable.from([gameplay(1)]), ingestProps()),
        (err) => {
            assert.equal(err.name, "ThrottlingError");
            assert.equal(err.inner?.response?.status, 429);
            assert.ok(err.inner.response.headers["retry-after"]);
            return true;
        });
});

test("a permanent error carries @permanent: true", async () => {
    await control("/_emulator/faults", { fail_count: 1, fail_status: 400, fail_code: "Stream_WrongNumberOfFields" });
    await assert.rejects(
        ingest.ingestFromStream(Readable.from([gameplay(1)]), ingestProps()),
        (err) => {
            const data = err.response?.data;
            assert.equal(err.response?.status, 400);
            assert.equal(data.error.code, "Stream_WrongNumberOfFields");
            assert.equal(data.error["@permanent"], true);
            return true;
        });
    // an unknown mapping is permanent too, straight from the emulator
    const bad = new IngestionProperties({
        database: DB, table: "GamePlay", format: DataFormat.JSON, ingestionMappingReference: "nope",
    });
    await assert.rejects(ingest.ingestFromStream(Readable.from([gameplay(1)]), bad), (err) => {
        assert.equal(err.response?.data?.error?.code, "BadRequest_MappingReferenceWasNotFound");
        assert.equal(err.response.data.error["@permanent"], true);
        return true;
    });
    // and invalid KQL is an error the SDK surfaces
    await assert.rejects(client.execute(DB, "GamePlay | frobnicate"), (err) => {
        assert.equal(err.response?.status, 400);
        return true;
    });
    const v2 = await client.execute(DB, "GamePlay | count");
    assert.equal([...v2.primaryResults[0].rows()][0].Count, 40, "nothing was applied by the failures");
});

test("clear table data", async () => {
    await client.executeMgmt(DB, ".clear table GamePlay data");
    const v2 = await client.execute(DB, "GamePlay | count");
    assert.equal([...v2.primaryResults[0].rows()][0].Count, 0);
});
