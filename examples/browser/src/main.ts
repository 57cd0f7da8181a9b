// A page that calls Gatehouse from the browser: the generated client
// (@gatehouse/client, gen/ts) with Connect's browser transports. The page's
// origin must be one of Gatehouse's CLERK_AUTHORIZED_PARTIES (CORS), and the
// session token is Clerk's: in a Clerk app, getToken below is
// `() => window.Clerk.session?.getToken()` (or useAuth().getToken in React).

import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { ProjectStatus, ProjectService } from "@gatehouse/client/gatehouse/v1/project_pb";
import { UserService } from "@gatehouse/client/gatehouse/v1/user_pb";

function element<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) {
    throw new Error(`no #${id}`);
  }
  return el as T;
}

const baseUrlInput = element<HTMLInputElement>("base-url");
const protocolSelect = element<HTMLSelectElement>("protocol");
const tokenArea = element<HTMLTextAreaElement>("token");
const statusLine = element("status");
const errorLine = element("error");
const meBlock = element("me");
const projectList = element("projects");

// ?gatehouse=http://127.0.0.1:8181 points the page at another server.
baseUrlInput.value = new URLSearchParams(location.search).get("gatehouse") ?? "http://127.0.0.1:8080";
const baseUrl = () => baseUrlInput.value.replace(/\/+$/, "");

// getToken returns the session token to send: the pasted one, else a fresh
// one from `gatehouse dev`. It stands where Clerk's getToken() does.
async function getToken(): Promise<string> {
  return tokenArea.value.trim() || devToken();
}

// devToken asks `gatehouse dev` for a session token for its dev user. It
// answers pages on its allowed origins only, and only in dev.
async function devToken(): Promise<string> {
  const res = await fetch(`${baseUrl()}/dev/token`, { method: "POST" });
  if (!res.ok) {
    throw new Error(`POST /dev/token: HTTP ${res.status}: ${(await res.text()).trim()}`);
  }
  const { token } = (await res.json()) as { token: string };
  tokenArea.value = token;
  return token;
}

// bearer sends `authorization: Bearer <token>` on every call, asking
// getToken each time: Clerk's tokens live about a minute, and its getToken
// caches and refreshes them.
function bearer(token: () => Promise<string>): Interceptor {
  return (next) => async (req) => {
    req.header.set("authorization", `Bearer ${await token()}`);
    return next(req);
  };
}

function transport(withToken: boolean): Transport {
  const options = { baseUrl: baseUrl(), interceptors: withToken ? [bearer(getToken)] : [] };
  return protocolSelect.value === "grpc-web" ? createGrpcWebTransport(options) : createConnectTransport(options);
}

// run shows what one call did: its result, or its error's code and message.
async function run(name: string, call: () => Promise<void>): Promise<void> {
  statusLine.textContent = `${name}…`;
  errorLine.textContent = "";
  delete errorLine.dataset.code;
  try {
    await call();
    statusLine.textContent = `${name}: OK (${protocolSelect.value})`;
  } catch (err) {
    const e = ConnectError.from(err);
    statusLine.textContent = `${name}: failed (${protocolSelect.value})`;
    errorLine.dataset.code = Code[e.code];
    errorLine.textContent = `${Code[e.code]}: ${e.rawMessage}`;
  }
}

async function getMe(withToken: boolean): Promise<void> {
  meBlock.textContent = "";
  const { user, session } = await createClient(UserService, transport(withToken)).getMe({});
  meBlock.textContent = [
    `${user?.id} — ${user?.firstName} ${user?.lastName} <${user?.email}>`,
    `tenant ${session?.tenantId}${session?.organizationRole ? ` as ${session.organizationRole}` : ""}`,
    `permissions ${session?.permissions.join(", ")}`,
  ].join("\n");
}

async function listProjects(): Promise<void> {
  const { projects } = await createClient(ProjectService, transport(true)).listProjects({ pageSize: 50 });
  projectList.replaceChildren(
    ...projects.map((p) => {
      const li = document.createElement("li");
      li.textContent = `${p.name} (${p.id}, ${ProjectStatus[p.status]})`;
      return li;
    }),
  );
  if (projects.length === 0) {
    const li = document.createElement("li");
    li.textContent = "no projects yet";
    projectList.replaceChildren(li);
  }
}

element("dev-token").addEventListener("click", () => run("dev token", async () => void (await devToken())));
element("get-me").addEventListener("click", () => run("GetMe", () => getMe(true)));
element("get-me-anonymous").addEventListener("click", () => run("GetMe without a token", () => getMe(false)));
element("list-projects").addEventListener("click", () => run("ListProjects", listProjects));
element<HTMLFormElement>("create-project").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = element<HTMLInputElement>("project-name");
  void run("CreateProject", async () => {
    await createClient(ProjectService, transport(true)).createProject({ name: name.value });
    name.value = "";
    await listProjects();
  });
});
document.body.dataset.ready = "true";
