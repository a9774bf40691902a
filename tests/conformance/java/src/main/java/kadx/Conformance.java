// Conformance.java - the kadx ADX emulator driven by Microsoft's Java SDK
// (kusto-data and kusto-ingest, pinned in ../../pom.xml): the library the
// Kusto Kafka sink connector uses. Run by run_java.py (meson test
// conformance-java), which starts the emulator and passes its URL as
// http://localhost:PORT.
//
// Why localhost and no token: kusto-data 7.0.x refuses to send an
// Authorization header over http:// to any host (HttpRequestBuilder compares
// the URL's host with the string "http://localhost", which never matches),
// and it leaves authentication out altogether for a cluster URL that starts
// with "http://localhost". So over plain HTTP the Java SDK can only talk to
// an emulator without auth, at "localhost" (run_java.py's plain run). Its
// tls run gives https://localhost:PORT (a TLS front before an emulator with
// --auth token): then the SDK's token path runs, with the TokenCredential
// below, and the same checks follow.
//
// What it checks, exiting non-zero on the first failure:
// 1. management commands through Client.executeMgmt (the seed's table,
//    JSON mapping, streaming policy, .show tables, .show version);
// 2. IngestClientFactory.createManagedStreamingIngestClient(dm, engine), the
//    connector's call: its ResourceManager runs `.show ingestion resources`
//    and `.get kusto identity token` at once; the identity token the SDK
//    parsed is the emulator's, and the resource refresh succeeded (empty:
//    the emulator has no blob storage, so queued ingestion has nothing);
// 3. ingestFromFile of a gzip JSON file (FileSourceInfo, "*.json.gz"):
//    streamed, the rows counted and read back with KQL (executeQuery, v2)
//    and executeQuery's typed values;
// 4. a transient 503 is retried by the managed client and stored once;
// 5. a permanent 400 is raised, with no queued fallback.
package kadx;

import com.azure.core.credential.AccessToken;
import com.azure.core.credential.TokenCredential;
import com.azure.core.credential.TokenRequestContext;
import com.microsoft.azure.kusto.data.Client;
import com.microsoft.azure.kusto.data.ClientFactory;
import com.microsoft.azure.kusto.data.KustoOperationResult;
import com.microsoft.azure.kusto.data.KustoResultSetTable;
import com.microsoft.azure.kusto.data.auth.ConnectionStringBuilder;
import com.microsoft.azure.kusto.ingest.IngestClientFactory;
import com.microsoft.azure.kusto.ingest.IngestionMapping;
import com.microsoft.azure.kusto.ingest.IngestionProperties;
import com.microsoft.azure.kusto.ingest.IngestionResourceManager;
import com.microsoft.azure.kusto.ingest.ManagedStreamingIngestClient;
import com.microsoft.azure.kusto.ingest.source.FileSourceInfo;

import java.io.FileOutputStream;
import java.io.OutputStream;
import java.lang.reflect.Method;
import java.net.HttpURLConnection;
import java.net.URL;
import java.net.URLEncoder;
import java.time.OffsetDateTime;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import reactor.core.publisher.Mono;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.GZIPOutputStream;

public final class Conformance {
    static final String DB = "leaderboard";
    static int passed = 0;

    static void check(boolean ok, String what) {
        if (!ok) {
            System.out.println("FAIL: " + what);
            System.out.println(passed + " passed, 1 failed");
            System.exit(1);
        }
        passed++;
        System.out.println("ok: " + what);
    }

    static long count(Client c) throws Exception {
        KustoResultSetTable t = c.executeQuery(DB, "GamePlay | count").getPrimaryResults();
        t.next();
        return t.getLong(0);
    }

    static final List<String> scopesAsked = new ArrayList<>();

    // The client-credentials flow against the emulator's AAD-shaped token
    // endpoint, as an azure-core TokenCredential (MSAL4J would first ask
    // login.microsoftonline.com for instance discovery).
    static TokenCredential emulatorCredential(String url, String id, String secret) {
        return (TokenRequestContext ctx) -> Mono.fromCallable(() -> {
            synchronized (scopesAsked) {
                scopesAsked.addAll(ctx.getScopes());
            }
            String form = "grant_type=client_credentials&client_id=" + URLEncoder.encode(id, StandardCharsets.UTF_8)
                    + "&client_secret=" + URLEncoder.encode(secret, StandardCharsets.UTF_8)
                    + "&scope=" + URLEncoder.encode(String.join(" ", ctx.getScopes()), StandardCharsets.UTF_8);
            HttpURLConnection h = (HttpURLConnection) new URL(url + "/kadx-tenant/oauth2/v2.0/token").openConnection();
            h.setRequestMethod("POST");
            h.setDoOutput(true);
            h.setRequestProperty("Content-Type", "application/x-www-form-urlencoded");
            try (OutputStream o = h.getOutputStream()) {
                o.write(form.getBytes(StandardCharsets.UTF_8));
            }
            if (h.getResponseCode() != 200) {
                throw new IllegalStateException("token endpoint answered " + h.getResponseCode());
            }
            String body = new String(h.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            Matcher m = Pattern.compile("\"access_token\"\\s*:\\s*\"([^\"]+)\"").matcher(body);
            Matcher e = Pattern.compile("\"expires_in\"\\s*:\\s*(\\d+)").matcher(body);
            if (!m.find() || !e.find()) {
                throw new IllegalStateException("no access_token/expires_in in " + body.length() + " bytes");
            }
            return new AccessToken(m.group(1), OffsetDateTime.now().plusSeconds(Long.parseLong(e.group(1))));
        });
    }

    static String control(String url, String path, String body) throws Exception {
        HttpURLConnection h = (HttpURLConnection) new URL(url + path).openConnection();
        if (body != null) {
            h.setRequestMethod("POST");
            h.setDoOutput(true);
            try (OutputStream o = h.getOutputStream()) {
                o.write(body.getBytes(StandardCharsets.UTF_8));
            }
        }
        check(h.getResponseCode() == 200, "control " + path);
        return new String(h.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    }

    static Path gzipJson(Path dir, String name, int n, int start) throws Exception {
        Path p = dir.resolve(name + ".json.gz");
        try (OutputStream o = new GZIPOutputStream(new FileOutputStream(p.toFile()))) {
            for (int i = 0; i < n; i++) {
                String line = String.format("{\"playerId\":%d,\"gameId\":%d,\"win\":%d,\"stake\":10,"
                        + "\"eventTime\":\"2024-05-01T10:00:%02dZ\"}\n", start + i, i % 5, i * 3, i % 60);
                o.write(line.getBytes(StandardCharsets.UTF_8));
            }
        }
        return p;
    }

    static IngestionProperties props(String mapping) {
        IngestionProperties p = new IngestionProperties(DB, "GamePlay");
        p.setDataFormat(IngestionProperties.DataFormat.JSON);
        p.setIngestionMapping(mapping, IngestionMapping.IngestionMappingKind.JSON);
        return p;
    }

    public static void main(String[] args) throws Exception {
        String url = args[0]; // http://localhost:PORT, or https://localhost:PORT
        Path dir = Path.of(args[1]);
        String seedTable = args[2], seedMapping = args[3], seedPolicy = args[4];
        boolean tls = url.startsWith("https://");

        ConnectionStringBuilder engine, dm;
        if (tls) {
            // the SDK's token path: cloud info from GET /v1/rest/auth/metadata,
            // the scope from its KustoServiceResourceId, a bearer on each call
            engine = ConnectionStringBuilder.createWithTokenCredential(url, emulatorCredential(url, args[6], args[7]));
            dm = ConnectionStringBuilder.createWithTokenCredential(url, emulatorCredential(url, args[6], args[7]));
        } else {
            // kusto-data ignores the credential for http://localhost (see above)
            engine = ConnectionStringBuilder.createWithAadAccessTokenAuthentication(url, "unused");
            dm = ConnectionStringBuilder.createWithAadAccessTokenAuthentication(url, "unused");
        }
        Client client = ClientFactory.createClient(engine);

        // 1. management commands
        client.executeMgmt(DB, seedTable);
        client.executeMgmt(DB, seedMapping);
        client.executeMgmt(DB, seedPolicy);
        KustoResultSetTable tables = client.executeMgmt(DB, ".show tables").getPrimaryResults();
        List<String> names = new ArrayList<>();
        while (tables.next()) {
            names.add(tables.getString("TableName"));
        }
        check(names.contains("GamePlay"), ".show tables lists GamePlay: " + names);
        KustoResultSetTable ver = client.executeMgmt(DB, ".show version").getPrimaryResults();
        check(ver.next() && ver.getString("ServiceType").equals("Engine"), ".show version");
        check(count(client) == 0, "GamePlay starts empty");

        // 2. the managed streaming client, created as the connector does
        ManagedStreamingIngestClient managed = IngestClientFactory.createManagedStreamingIngestClient(dm, engine);
        IngestionResourceManager rm = managed.getResourceManager();
        Method idTok = rm.getClass().getMethod("getIdentityToken");
        idTok.setAccessible(true);
        check("kadx-emulator-identity-token".equals(idTok.invoke(rm)),
                ".get kusto identity token answered and parsed");
        String noContainers = null;
        try {
            rm.getShuffledContainers();
        } catch (Exception e) {
            noContainers = e.getMessage();
        }
        check(noContainers != null && noContainers.startsWith("Unable to get ingestion resources")
                && !noContainers.contains("refresh job failed") && !noContainers.contains("timed out"),
                ".show ingestion resources answered (no containers, refresh succeeded): " + noContainers);

        // 3. a gzip JSON file through the managed client
        Path f = gzipJson(dir, "gameplay-a", 40, 0);
        managed.ingestFromFile(new FileSourceInfo(f.toString()), props(args[5]));
        check(count(client) == 40, "40 rows from the gzip JSON file");
        KustoOperationResult r = client.executeQuery(DB,
                "GamePlay | where PlayerID == 7 | project PlayerID, Win, EventTime");
        KustoResultSetTable t = r.getPrimaryResults();
        check(t.next() && t.getInt("PlayerID") == 7 && t.getLong("Win") == 21
                && t.getKustoDateTime("EventTime").toString().startsWith("2024-05-01T10:00:07"),
                "typed values read back: " + r.getPrimaryResults());
        String stats = control(url, "/_emulator/stats", null);
        check(stats.contains("\"leaderboard.GamePlay\":40"), "emulator stats: 40 rows, " + stats);

        // 4. a transient 503: retried by the managed client, stored once
        control(url, "/_emulator/faults", "{\"fail_count\":1,\"fail_status\":503}");
        managed.ingestFromFile(new FileSourceInfo(gzipJson(dir, "gameplay-b", 10, 1000).toString()),
                props(args[5]));
        check(count(client) == 50, "after a 503 the 10 rows are stored once");
        check(control(url, "/_emulator/stats", null).contains("\"fail\":1"), "the 503 was served");

        // 5. a permanent error (unknown mapping) is raised, nothing stored
        boolean raised = false;
        try {
            managed.ingestFromFile(new FileSourceInfo(gzipJson(dir, "gameplay-c", 3, 2000).toString()),
                    props("nope"));
        } catch (Exception e) {
            raised = String.valueOf(e.getMessage()).contains("nope")
                    || String.valueOf(e.getCause()).contains("MappingReferenceWasNotFound");
            if (!raised) {
                e.printStackTrace(System.out);
            }
        }
        check(raised, "an unknown mapping is raised as a permanent error");
        check(count(client) == 50, "nothing stored by the failure");

        if (tls) {
            synchronized (scopesAsked) {
                check(!scopesAsked.isEmpty() && scopesAsked.stream().allMatch(
                        x -> x.equals("https://kusto.kusto.windows.net/.default")),
                        "tokens asked for the metadata's KustoServiceResourceId scope: " + scopesAsked);
            }
        }
        managed.close();
        System.out.println(passed + " passed, 0 failed");
        System.exit(0);
    }
}
