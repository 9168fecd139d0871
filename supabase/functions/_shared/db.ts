// PostgreSQL through postgres.js with SUPABASE_DB_URL (the variable Supabase sets for Edge
// Functions). Reads run as the caller: a transaction in the caller's role (authenticated or
// service_role) with its JWT claims, so row-level security and the SQL functions' caller checks
// apply exactly as through Supabase's API. Only writing a vector uses the owner connection.

import postgres from "postgres";
import type { Caller } from "./auth.ts";
import { HttpError } from "./http.ts";

export type Sql = postgres.Sql;
export type Tx = postgres.TransactionSql;

let pool: Sql | null = null;

/** The connection pool (the owner's connection: SUPABASE_DB_URL), created on first use. */
export function db(): Sql {
  if (pool) return pool;
  const url = Deno.env.get("SUPABASE_DB_URL");
  if (!url) throw new HttpError(500, "misconfigured", "SUPABASE_DB_URL is not set");
  pool = postgres(url, {
    max: Number(Deno.env.get("TWO_TOWER_DB_POOL_SIZE") ?? 4),
    idle_timeout: 30,
    connect_timeout: 10,
    // Supabase's transaction pooler (port 6543) does not keep prepared statements.
    prepare: !/:6543(\/|$)/.test(url),
    onnotice: () => {},
    connection: { application_name: "two_tower_edge_function", search_path: "public, extensions" },
  });
  return pool;
}

/** Closes the pool (tests, benchmark). */
export async function closeDb(): Promise<void> {
  const current = pool;
  pool = null;
  await current?.end({ timeout: 5 });
}

/**
 * Runs fn in one read-only REPEATABLE READ transaction as the caller: every query sees the same
 * snapshot (the active version, the user's vector and likes, the ranking), so a model switch
 * in the middle of a request cannot mix versions. Retried once on a serialization failure.
 */
export async function asCaller<T>(caller: Caller, fn: (tx: Tx) => Promise<T>): Promise<T> {
  const claims = JSON.stringify({ ...caller.claims, role: caller.role });
  for (let attempt = 1;; attempt++) {
    try {
      return await db().begin("isolation level repeatable read read only", async (tx) => {
        await tx`select set_config('role', ${caller.role}, true), set_config('request.jwt.claims', ${claims}, true)`;
        return await fn(tx);
      }) as T;
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (attempt < 2 && (code === "40001" || code === "40P01")) continue;
      throw error;
    }
  }
}
