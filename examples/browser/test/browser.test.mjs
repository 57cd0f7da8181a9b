// The example page in a real browser — Debian's headless Chromium, driven by
// playwright-core (which downloads no browser) — against a real
// `gatehouse dev` built from this tree:
//
//   - from an allowed origin (http://localhost:PORT, the dev server's
//     CLERK_AUTHORIZED_PARTIES), the page gets a dev token and GetMe shows the
//     user, over Connect and over gRPC-Web; CreateProject then ListProjects
//     shows the project;
//   - GetMe without a token shows Unauthenticated;
//   - the same page served from another origin (http://127.0.0.1:PORT) is
//     blocked by CORS, even with a good token.
//
// Every wait is bounded, the server and the browser are stopped whatever
// happens, and a failure prints the server's log and the browser's console.
// Environment: CHROMIUM (default /usr/bin/chromium), GATEHOUSE_BIN (an
// already built binary: skips the build).

import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

const run = promisify(execFile);
const here = fileURLToPath(new URL(".", import.meta.url));
const exampleDir = resolve(here, "..");
const repoRoot = resolve(exampleDir, "../..");
const WAIT = 15_000; // any one thing the page or the server does

let tmp = "";
let server; // gatehouse dev
let serverExit;
let serverLog = "";
let pages; // the static server for dist/
let pagePort = 0;
let gatehouseURL = "";
let context; // the browser
const consoleLog = [];

// serveDist serves the built page on 127.0.0.1 at a free port. One server
// is two origins: http://localhost:PORT (allowed) and http://127.0.0.1:PORT
// (not).
async function serveDist() {
  const types = { ".html": "text/html", ".js": "text/javascript", ".map": "application/json" };
  const root = join(exampleDir, "dist");
  const srv = createServer(async (req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const file = join(root, path === "/" ? "index.html" : path);
    if (!file.startsWith(root)) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  await new Promise((ok, fail) => srv.listen(0, "127.0.0.1", ok).once("error", fail));
  return srv;
}

// waitForDevState waits for dev.json, which `gatehouse dev` writes once it
// listens, and returns its HTTP address.
async function waitForDevState(devDir, deadline) {
  for (;;) {
    if (server.exitCode !== null || server.signalCode) {
      throw new Error(`gatehouse dev exited early (${server.exitCode ?? server.signalCode}):\n${serverLog}`);
    }
    try {
      const state = JSON.parse(await readFile(join(devDir, "dev.json"), "utf8"));
      if (state.http_addr) {
        return state.http_addr;
      }
    } catch {
      // not written yet
    }
    if (Date.now() > deadline) {
      throw new Error(`gatehouse dev did not start in time:\n${serverLog}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "gatehouse-browser-"));
  const bin = process.env.GATEHOUSE_BIN ?? join(tmp, "gatehouse");
  if (!process.env.GATEHOUSE_BIN) {
    await run("go", ["build", "-o", bin, "./cmd/gatehouse"], { cwd: repoRoot, maxBuffer: 64 << 20, timeout: 5 * 60_000 });
  }

  pages = await serveDist();
  pagePort = pages.address().port;

  // Port 0 for both listeners, a fresh directory: nothing to collide with.
  const devDir = join(tmp, "dev");
  server = spawn(bin, ["dev", "--dir", devDir, "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, CLERK_AUTHORIZED_PARTIES: `http://localhost:${pagePort}`, DATABASE_URL: "" },
  });
  serverExit = new Promise((r) => server.once("exit", r));
  server.stdout.on("data", (b) => (serverLog += b));
  server.stderr.on("data", (b) => (serverLog += b));
  gatehouseURL = `http://${await waitForDevState(devDir, Date.now() + 60_000)}`;

  context = await chromium.launchPersistentContext(join(tmp, "profile"), {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    chromiumSandbox: false, // --no-sandbox: CI runs as root
    args: [
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
    timeout: 60_000,
  });
  context.setDefaultTimeout(WAIT);
}, { timeout: 10 * 60_000 });

after(async () => {
  const bounded = (p, ms) => Promise.race([p, new Promise((r) => setTimeout(r, ms))]);
  if (context) {
    await bounded(context.close(), 10_000);
  }
  if (server && server.exitCode === null && !server.signalCode) {
    server.kill("SIGTERM");
    if ((await bounded(serverExit.then(() => "exited"), 20_000)) !== "exited") {
      server.kill("SIGKILL");
      console.error(`gatehouse dev did not stop within 20s of SIGTERM:\n${serverLog}`);
    }
  }
  if (pages) {
    pages.closeAllConnections();
    await bounded(new Promise((r) => pages.close(r)), 5_000);
  }
  if (tmp) {
    await rm(tmp, { recursive: true, force: true });
  }
});

// openPage opens the example page served from origin, pointed at the dev
// server, and records its console.
async function openPage(origin) {
  const page = await context.newPage();
  page.on("console", (msg) => consoleLog.push(`[${origin}] ${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => consoleLog.push(`[${origin}] pageerror: ${err.message}`));
  await page.goto(`${origin}/?gatehouse=${encodeURIComponent(gatehouseURL)}`);
  await page.locator("body[data-ready=true]").waitFor();
  return page;
}

// outcome waits until the page's status line says the call finished and
// returns what the page shows.
async function outcome(page, call) {
  await page.locator("#status", { hasText: new RegExp(`^${call}: (OK|failed)`) }).waitFor();
  return {
    status: await page.locator("#status").textContent(),
    error: await page.locator("#error").textContent(),
    code: await page.locator("#error").getAttribute("data-code"),
    me: await page.locator("#me").textContent(),
    projects: await page.locator("#projects").textContent(),
  };
}

// explain adds what the server and the browser said to a failed assertion.
async function explain(fn) {
  try {
    await fn();
  } catch (err) {
    err.message += `\n--- browser console:\n${consoleLog.join("\n")}\n--- gatehouse dev:\n${serverLog.slice(-4000)}`;
    throw err;
  }
}

const allowed = () => `http://localhost:${pagePort}`;
let devToken = "";

test("from an allowed origin: a dev token, GetMe and ListProjects over Connect and gRPC-Web", () =>
  explain(async () => {
    const page = await openPage(allowed());
    for (const protocol of ["connect", "grpc-web"]) {
      await page.selectOption("#protocol", protocol);
      await page.click("#get-me");
      const got = await outcome(page, "GetMe");
      assert.equal(got.status, `GetMe: OK (${protocol})`, `${protocol}: ${got.error}`);
      assert.match(got.me, /^user_dev — Dev User <dev@gatehouse\.test>/m);
      assert.match(got.me, /tenant user_dev/);
    }
    devToken = (await page.locator("#token").inputValue()).trim();
    assert.match(devToken, /^ey[\w-]+\.[\w-]+\.[\w-]+$/, "the page got no token from gatehouse dev");

    const name = `From the browser ${Date.now()}`;
    await page.fill("#project-name", name);
    await page.click("#create-project button");
    const created = await outcome(page, "CreateProject");
    assert.equal(created.status, "CreateProject: OK (grpc-web)", created.error);
    assert.ok(created.projects.includes(name), `ListProjects shows ${created.projects}`);

    await page.selectOption("#protocol", "connect");
    await page.click("#list-projects");
    const listed = await outcome(page, "ListProjects");
    assert.equal(listed.status, "ListProjects: OK (connect)", listed.error);
    assert.ok(listed.projects.includes(name), `ListProjects shows ${listed.projects}`);
    await page.close();
  }));

test("GetMe without a token shows Unauthenticated", () =>
  explain(async () => {
    const page = await openPage(allowed());
    for (const protocol of ["connect", "grpc-web"]) {
      await page.selectOption("#protocol", protocol);
      await page.click("#get-me-anonymous");
      const got = await outcome(page, "GetMe without a token");
      assert.equal(got.code, "Unauthenticated", `${protocol}: ${got.status} ${got.error}`);
      assert.match(got.error, /^Unauthenticated: invalid token/);
      assert.equal(got.me, "");
    }
    await page.close();
  }));

test("from an origin not allowed: blocked by CORS, even with a good token", () =>
  explain(async () => {
    assert.ok(devToken, "needs the token from the first test");
    const origin = `http://127.0.0.1:${pagePort}`;
    const before = consoleLog.length;
    const page = await openPage(origin);
    await page.fill("#token", devToken);
    await page.click("#get-me");
    const got = await outcome(page, "GetMe");
    assert.equal(got.status, "GetMe: failed (connect)");
    assert.equal(got.me, "", "the page read an answer it must not");
    // fetch() fails with no answer to read: Connect reports it as Unknown.
    assert.equal(got.code, "Unknown", got.error);
    // The browser says why, naming the origin and CORS (its console
    // messages arrive on their own time: wait for them, boundedly).
    const deadline = Date.now() + WAIT;
    while (!consoleLog.slice(before).some((l) => l.includes("blocked by CORS policy")) && Date.now() < deadline) {
      await page.waitForTimeout(50);
    }
    const said = consoleLog.slice(before).join("\n");
    assert.match(said, /blocked by CORS policy/, `console:\n${said}`);
    assert.ok(said.includes(`from origin '${origin}'`), `console:\n${said}`);

    // The dev token endpoint refuses that origin too.
    await page.fill("#token", "");
    await page.click("#dev-token");
    const token = await outcome(page, "dev token");
    assert.equal(token.status, "dev token: failed (connect)", token.error);
    await page.close();
  }));
