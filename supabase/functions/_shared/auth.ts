// Who is calling: the JWT's role and user. Every token's signature, algorithm and validity period
// are verified here (jwt.ts: HS256 with SUPABASE_JWT_SECRET, ES256/RS256 with the project's signing
// keys at SUPABASE_URL), whether or not the gateway verified it too (verify_jwt in
// supabase/config.toml): a function deployed with --no-verify-jwt, or reached past the gateway,
// trusts no claim it cannot verify. Only the authenticated role (with a user) and the service role
// may call the functions.

import type { JWTPayload } from "jose";
import { HttpError, isUuid } from "./http.ts";
import { verifyJwt } from "./jwt.ts";

export interface Caller {
  role: "authenticated" | "service_role";
  /** The signed-in user (the JWT's sub); null for the service role. */
  userId: string | null;
  /** The JWT's claims, handed to PostgreSQL as request.jwt.claims. */
  claims: JWTPayload;
}

export async function authenticate(req: Request): Promise<Caller> {
  const match = /^Bearer\s+(\S+)$/i.exec((req.headers.get("Authorization") ?? "").trim());
  if (!match) {
    throw new HttpError(401, "unauthorized", "missing Authorization: Bearer <JWT> header");
  }
  const claims = await verifyJwt(match[1]);
  if (claims.role === "service_role") return { role: "service_role", userId: null, claims };
  if (claims.role === "authenticated") {
    if (!isUuid(claims.sub)) throw new HttpError(401, "invalid_token", "the JWT names no user (sub)");
    return { role: "authenticated", userId: claims.sub.toLowerCase(), claims };
  }
  throw new HttpError(
    401,
    "unauthorized",
    `sign in first: a JWT with role ${JSON.stringify(claims.role ?? null)} may not call this function`,
  );
}

/** The user a request is about: the signed-in user, or the service role's explicit user_id. */
export function targetUser(caller: Caller, requested: unknown): string {
  if (requested !== undefined && requested !== null && !isUuid(requested)) {
    throw new HttpError(400, "invalid_user_id", `"user_id" must be a uuid, got ${JSON.stringify(requested)}`);
  }
  const wanted = typeof requested === "string" ? requested.toLowerCase() : null;
  if (caller.role === "service_role") {
    if (!wanted) {
      throw new HttpError(400, "missing_user_id", `the service role must name the user: "user_id"`);
    }
    return wanted;
  }
  if (wanted && wanted !== caller.userId) {
    throw new HttpError(403, "forbidden", "a signed-in user may only ask about themselves; omit user_id");
  }
  return caller.userId as string;
}
