// End-to-end test of the TypeScript client against the real server: it
// builds cmd/gatehouse, runs `gatehouse dev` (the built-in Clerk emulator, no
// network) on free loopback ports, mints tokens with `gatehouse token`, and
// calls Gatehouse with Connect's Node transport speaking the gRPC protocol,
// the way a Node service or a Next.js/Astro server would — and, on the HTTP
// listener, with the Connect protocol and with @connectrpc/connect-web's
// fetch-based transports, the code a browser runs.
//
// GATEHOUSE_BIN names an already built binary and skips the build.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import {
  createConnectTransport as createWebConnectTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-web";

import { UserService } from "../src/gatehouse/v1/user_pb.js";
import { ProjectService, ProjectStatus } from "../src/gatehouse/v1/project_pb.js";

const run = promisify(execFile);

// This file runs from gen/ts/dist/test/; the repository root is four up.
const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../../..");

let tmp = "";
let bin = "";
let devDir = "";
let server: ChildProcess | undefined;
let serverExit: Promise<number | null> | undefined;
let serverLog = "";
let users: Client<typeof UserService>;
let projects: Client<typeof ProjectService>;
let httpAddr = "";

// bearer sends "authorization: Bearer <token>" on every call, asking getToken
// each time, as an app does with Clerk's `await auth().getToken()`.
function bearer(getToken: () => Promise<string | null> | string | null): Interceptor {
  return (next) => async (req) => {
    const token = await getToken();
    if (token) {
      req.header.set("authorization", `Bearer ${token}`);
    }
    return next(req);
  };
}

// token runs `gatehouse token --dir <devDir> ...args` and returns what it prints.
async function token(...args: string[]): Promise<string> {
  const { stdout } = await run(bin, ["token", "--dir", devDir, ...args]);
  const t = stdout.trim();
  assert.ok(t.length > 0, "gatehouse token printed nothing");
  return t;
}

function auth(t: string, tenant?: string): { headers: Record<string, string> } {
  const headers: Record<string, string> = { authorization: `Bearer ${t}` };
  if (tenant) {
    headers["x-gatehouse-tenant"] = tenant;
  }
  return { headers };
}

function isCode(code: Code): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof ConnectError, `want a ConnectError, got ${String(err)}`);
    assert.equal(Code[err.code], Code[code], err.rawMessage);
    return true;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// waitForDevState waits for `gatehouse dev` to write dev.json, which it does
// once both listeners are bound, and returns the addresses from it.
async function waitForDevState(deadline: number): Promise<{ grpc_addr: string; http_addr: string }> {
  for (;;) {
    if (server?.exitCode !== null || server?.signalCode) {
      throw new Error(`gatehouse dev exited early (${server?.exitCode ?? server?.signalCode}):\n${serverLog}`);
    }
    try {
      const state = JSON.parse(await readFile(join(devDir, "dev.json"), "utf8")) as { grpc_addr?: string; http_addr?: string };
      if (state.grpc_addr && state.http_addr) {
        return { grpc_addr: state.grpc_addr, http_addr: state.http_addr };
      }
    } catch {
      // not written yet, or half written
    }
    if (Date.now() > deadline) {
      throw new Error(`gatehouse dev did not start within the deadline:\n${serverLog}`);
    }
    await sleep(100);
  }
}

function waitForPort(host: string, port: number, deadline: number): Promise<void> {
  return new Promise((ok, fail) => {
    const attempt = () => {
      const sock = tcpConnect({ host, port }, () => {
        sock.destroy();
        ok();
      });
      sock.on("error", () => {
        sock.destroy();
        if (Date.now() > deadline) {
          fail(new Error(`gRPC port ${host}:${port} never accepted:\n${serverLog}`));
        } else {
          setTimeout(attempt, 100);
        }
      });
    };
    attempt();
  });
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "gatehouse-node-"));
  devDir = join(tmp, "dev");
  bin = process.env.GATEHOUSE_BIN ?? join(tmp, "gatehouse");
  if (!process.env.GATEHOUSE_BIN) {
    await run("go", ["build", "-o", bin, "./cmd/gatehouse"], { cwd: repoRoot, maxBuffer: 64 << 20 });
  }

  // Port 0: the server picks free ports and reports them in dev.json, so
  // nothing can take them between choosing and binding.
  server = spawn(bin, ["dev", "--dir", devDir, "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  serverExit = new Promise((r) => server!.once("exit", (code) => r(code)));
  server.stdout!.on("data", (b: Buffer) => (serverLog += b.toString()));
  server.stderr!.on("data", (b: Buffer) => (serverLog += b.toString()));

  const deadline = Date.now() + 60_000;
  const state = await waitForDevState(deadline);
  const addr = state.grpc_addr;
  httpAddr = state.http_addr;
  const i = addr.lastIndexOf(":");
  await waitForPort(addr.slice(0, i), Number(addr.slice(i + 1)), deadline);

  const transport = createGrpcTransport({ baseUrl: `http://${addr}` });
  users = createClient(UserService, transport);
  projects = createClient(ProjectService, transport);
}, { timeout: 10 * 60_000 });

after(async () => {
  if (server && server.exitCode === null && !server.signalCode) {
    server.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      serverExit,
      new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), 20_000))),
    ]);
    clearTimeout(timer);
    if (code === "timeout") {
      server.kill("SIGKILL");
      assert.fail(`gatehouse dev did not stop within 20s of SIGTERM:\n${serverLog}`);
    }
  }
  if (tmp) {
    await rm(tmp, { recursive: true, force: true });
  }
});

test("GetMe with a session token returns the signed-in user", async () => {
  const t = await token();
  const res = await users.getMe({}, auth(t));
  assert.equal(res.user?.id, "user_dev");
  assert.equal(res.session?.tenantId, "user_dev");
  assert.equal(res.session?.organizationId, "");
});

test("GetMe through an interceptor that asks for the token on each call", async () => {
  const t = await token();
  const addr = JSON.parse(await readFile(join(devDir, "dev.json"), "utf8")).grpc_addr as string;
  const client = createClient(
    UserService,
    createGrpcTransport({ baseUrl: `http://${addr}`, interceptors: [bearer(async () => t)] }),
  );
  const res = await client.getMe({});
  assert.equal(res.user?.id, "user_dev");
});

test("CreateProject then ListProjects lists it", async () => {
  const t = await token();
  const name = `node test ${Date.now()}`;
  const created = await projects.createProject({ name, description: "from TypeScript" }, auth(t));
  const p = created.project;
  assert.ok(p?.id, "created project has no id");
  assert.equal(p.name, name);
  assert.equal(p.tenantId, "user_dev");
  assert.equal(p.ownerId, "user_dev");
  assert.equal(ProjectStatus[p.status], ProjectStatus[ProjectStatus.ACTIVE]);
  assert.ok(p.createTime, "created project has no create_time");

  const listed = await projects.listProjects({}, auth(t));
  const found = listed.projects.find((q) => q.id === p.id);
  assert.ok(found, `ListProjects does not list ${p.id}: ${listed.projects.map((q) => q.id).join(", ")}`);
  assert.equal(found.name, name);
});

test("GetMe without a token is Unauthenticated", async () => {
  await assert.rejects(users.getMe({}), isCode(Code.Unauthenticated));
});

test("GetMe with a malformed token is Unauthenticated", async () => {
  await assert.rejects(users.getMe({}, auth("not-a-token")), isCode(Code.Unauthenticated));
});

test("a machine token reads its tenant's projects and cannot write", async () => {
  const admin = await token("--user", "user_nodeadmin", "--org", "org_dev", "--role", "org:admin");
  const created = await projects.createProject({ name: `org project ${Date.now()}` }, auth(admin));
  const id = created.project?.id;
  assert.ok(id);
  assert.equal(created.project?.tenantId, "org_dev");

  const machine = await token("--machine");
  assert.match(machine, /^mt_/);
  const listed = await projects.listProjects({}, auth(machine, "org_dev"));
  assert.ok(listed.projects.some((q) => q.id === id), "machine's ListProjects misses the org's project");
  assert.ok(listed.projects.every((q) => q.tenantId === "org_dev"), "machine sees another tenant's projects");

  await assert.rejects(projects.createProject({ name: "nope" }, auth(machine, "org_dev")), isCode(Code.PermissionDenied));
});

// The same calls on the HTTP listener: the Connect protocol from Node, and
// the browser's transports (connect-web, over fetch: Node 20 has one).
for (const [name, transport] of [
  ["Connect (connect-node, HTTP/1.1)", () => createConnectTransport({ baseUrl: `http://${httpAddr}`, httpVersion: "1.1" })],
  ["Connect (connect-web)", () => createWebConnectTransport({ baseUrl: `http://${httpAddr}` })],
  ["Connect binary (connect-web)", () => createWebConnectTransport({ baseUrl: `http://${httpAddr}`, useBinaryFormat: true })],
  ["gRPC-Web (connect-web)", () => createGrpcWebTransport({ baseUrl: `http://${httpAddr}` })],
] as const) {
  test(`${name}: GetMe, CreateProject then ListProjects; no token is Unauthenticated`, async () => {
    const t = await token();
    const u = createClient(UserService, transport());
    const p = createClient(ProjectService, transport());
    const me = await u.getMe({}, auth(t));
    assert.equal(me.user?.id, "user_dev");

    const created = await p.createProject({ name: `${name} ${Date.now()}` }, auth(t));
    const listed = await p.listProjects({ pageSize: 200 }, auth(t));
    assert.ok(listed.projects.some((q) => q.id === created.project?.id), `${name}: ListProjects misses the new project`);

    await assert.rejects(u.getMe({}), isCode(Code.Unauthenticated));
    await assert.rejects(p.createProject({ name: " " }, auth(t)), isCode(Code.InvalidArgument));
  });
}
