// The registry auth handshake: parse WWW-Authenticate, and turn credentials
// into a Basic header or a bearer token from the challenge's realm.
import { createHash } from "node:crypto";
import type { AuthConfig } from "./hosts.js";

export interface Challenge {
  /** lower case: `bearer`, `basic` */
  scheme: string;
  params: Readonly<Record<string, string>>;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/;

/** Parses every challenge of WWW-Authenticate headers (RFC 7235). */
export function parseChallenges(header: string | readonly string[] | undefined): Challenge[] {
  const challenges: Challenge[] = [];
  for (const text of header === undefined ? [] : typeof header === "string" ? [header] : header) {
    let rest = text;
    let current: { scheme: string; params: Record<string, string> } | undefined;
    for (;;) {
      rest = rest.replace(/^[\s,]+/, "");
      const token = TOKEN.exec(rest)?.[0];
      if (token === undefined) break;
      rest = rest.slice(token.length);
      const afterSpace = rest.replace(/^\s+/, "");
      if (afterSpace.startsWith("=") && current !== undefined) {
        rest = afterSpace.slice(1).replace(/^\s+/, "");
        let value: string;
        if (rest.startsWith('"')) {
          const quoted = /^"((?:[^"\\]|\\.)*)"/.exec(rest);
          value = (quoted?.[1] ?? rest.slice(1)).replace(/\\(.)/g, "$1");
          rest = quoted === null ? "" : rest.slice(quoted[0].length);
        } else {
          value = /^[^,\s]*/.exec(rest)?.[0] ?? "";
          rest = rest.slice(value.length);
        }
        current.params[token.toLowerCase()] = value;
      } else {
        current = { scheme: token.toLowerCase(), params: {} };
        challenges.push(current);
        rest = afterSpace;
        // A token68 credential (`Negotiate abc==`) is not a parameter; skip it.
        const token68 = /^[A-Za-z0-9._~+/-]+=*(?=\s*(,|$))/.exec(rest);
        if (token68 !== null && !rest.slice(token68[0].length).trimStart().startsWith("=")) rest = rest.slice(token68[0].length);
      }
    }
  }
  return challenges;
}

export interface Login {
  username?: string;
  password?: string;
  identityToken?: string;
  registryToken?: string;
}

/** Credentials in one shape; `auth` (base64 of user:password) fills username and password. */
export function loginOf(auth: AuthConfig | undefined): Login {
  if (auth === undefined) return {};
  const login: Login = {};
  let { username, password } = auth;
  if (auth.auth) {
    const decoded = Buffer.from(auth.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon > 0) {
      username = decoded.slice(0, colon);
      password = decoded.slice(colon + 1);
    }
  }
  if (username) login.username = username;
  if (password) login.password = password;
  if (auth.identity_token) login.identityToken = auth.identity_token;
  if (auth.registry_token) login.registryToken = auth.registry_token;
  return login;
}

export const basicAuthorization = (username: string, password: string): string =>
  `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;

/** Keys caches by who asks, without keeping the secret in the key. */
export function loginKey(login: Login): string {
  if (!login.username && !login.password && !login.identityToken && !login.registryToken) return "anonymous";
  return createHash("sha256").update(JSON.stringify([login.username, login.password, login.identityToken, login.registryToken])).digest("hex");
}

/** The scope a token needs to pull from, or push to, a repository. */
export const repositoryScope = (path: string, push: boolean): string => `repository:${path}:${push ? "pull,push" : "pull"}`;

export interface TokenResponse {
  token?: string;
  access_token?: string;
  expires_in?: number;
  issued_at?: string;
  refresh_token?: string;
}

/** The bearer token of a token server's answer, and until when to use it. */
export function tokenOf(body: unknown, now = Date.now()): { token: string; expiresAt: number } | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const r = body as TokenResponse;
  const token = r.token || r.access_token;
  if (typeof token !== "string" || token === "") return undefined;
  // The spec's default lifetime is 60 s; renew a little early.
  const lifetime = typeof r.expires_in === "number" && r.expires_in > 0 ? r.expires_in : 60;
  return { token, expiresAt: now + Math.max(lifetime - 10, lifetime / 2) * 1000 };
}
