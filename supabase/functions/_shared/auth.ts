// Who is calling: the JWT's role and user. With SUPABASE_JWT_SECRET set (local runs, tests) the
// signature and expiry are verified here (HS256, as Supabase signs with the project's JWT
// secret); without it the function relies on the gateway, which verifies every request's JWT
// before it reaches the function (verify_jwt = true in supabase/config.toml).

import { decodeJwt, type JWTPayload, jwtVerify } from "jose";
import { HttpError, isUuid } from "./http.ts";

export interface Caller {
  role: "authenticated" | "service_role";
  /** The signed-in user (the JWT's sub); null for the service role. */
  userId: string | null;
  /** The JWT's claims, handed to PostgreSQL as request.jwt.claims. */
  claims: JWTPayload;
}

const encoder = new TextEncoder();

export async function authenticate(req: Request): Promise<Caller> {
  const match = /^Bearer\s+(\S+)$/i.exec((req.headers.get("Authorization") ?? "").trim());
  if (!match) {
    throw new HttpError(401, "unauthorized", "missing Authorization: Bearer <JWT> header");
  }
  let claims: JWTPayload;
  const secret = Deno.env.get("SUPABASE_JWT_SECRET");
  try {
    claims = secret
      ? (await jwtVerify(match[1], encoder.encode(secret), { algorithms: ["HS256"] })).payload
      : decodeJwt(match[1]);
  } catch {
    throw new HttpError(401, "invalid_token", "the JWT is invalid, expired or not signed by this project");
  }
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
