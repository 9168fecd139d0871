// Shared by the Deno tests: the fixture the pytest module writes (a database the pipeline really
// trained and published a model into, and the pipeline's own user vectors), JWTs, requests.

import { SignJWT } from "jose";
import postgres from "postgres";
import type { Caller } from "../_shared/auth.ts";

export interface Fixture {
  db_url: string;
  jwt_secret: string;
  as_of_us: string;
  version: string;
  user_tower: { model_path: string; feature_spec_path: string };
  parity_users: Record<string, string>;
  references: Record<string, { vector: number[]; likes_until_us: string }>;
  fresh_users: string[];
  stale_user: { id: string; video_id: string; liked_at_us: string };
  new_user: string;
  unknown_user: string;
}

const path = Deno.env.get("TWO_TOWER_EDGE_FIXTURE");
/** null when the tests run without the pytest fixture: the database tests are then skipped. */
export const fixture: Fixture | null = path ? JSON.parse(await Deno.readTextFile(path)) : null;

/** Options for tests that talk to the database (connection pools outlive a single test). */
export const dbTest = { ignore: fixture === null, sanitizeOps: false, sanitizeResources: false };

let ownerPool: postgres.Sql | null = null;

/** The owner's connection, to check what the functions did. */
export function owner(): postgres.Sql {
  if (!fixture) throw new Error("no fixture");
  ownerPool ??= postgres(fixture.db_url, { max: 2, onnotice: () => {} });
  return ownerPool;
}

export async function closeOwner(): Promise<void> {
  await ownerPool?.end({ timeout: 5 });
  ownerPool = null;
}

export async function jwt(
  claims: Record<string, unknown>,
  options: { secret?: string; expiresIn?: string | number } = {},
): Promise<string> {
  const secret = options.secret ?? fixture?.jwt_secret ?? "test-secret";
  return await new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuedAt()
    .setExpirationTime(options.expiresIn ?? "10m")
    .sign(new TextEncoder().encode(secret));
}

export const userToken = (userId: string) =>
  jwt({ sub: userId, role: "authenticated", aud: "authenticated" });
export const serviceToken = () => jwt({ role: "service_role" });

export const serviceCaller: Caller = { role: "service_role", userId: null, claims: { role: "service_role" } };
export const userCaller = (userId: string): Caller => ({
  role: "authenticated",
  userId,
  claims: { sub: userId, role: "authenticated" },
});

export interface Answer {
  status: number;
  contentType: string | null;
  // deno-lint-ignore no-explicit-any
  body: any;
}

/** POSTs body (an object, or a raw string) to a handler, with a bearer token unless null. */
export async function post(
  handler: (req: Request) => Promise<Response>,
  body: unknown,
  token: string | null,
  method = "POST",
): Promise<Answer> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const request = new Request("http://localhost/functions/v1/test", {
    method,
    headers,
    body: method === "GET" ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const response = await handler(request);
  const text = await response.text();
  return {
    status: response.status,
    contentType: response.headers.get("Content-Type"),
    body: text ? JSON.parse(text) : null,
  };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}
