// Verifying a caller's JWT in the function itself, whatever the gateway did (fail closed).
//
// Supabase Auth signs tokens in one of two ways, and a token's header says which:
// - HS256 with the project's JWT secret (the legacy secret; also the legacy anon and service_role
//   keys): verified with SUPABASE_JWT_SECRET;
// - ES256 or RS256 with the project's signing keys: verified with the public keys Supabase Auth
//   publishes at ${SUPABASE_URL}/auth/v1/.well-known/jwks.json (fetched on first use, cached
//   10 minutes, fetched again at most every 30 s when a token names a key not in the cache, so a
//   rotated key is picked up: jose's createRemoteJWKSet).
// A function with neither variable answers 500 and says which to set; a token whose algorithm
// this function cannot verify (none, another algorithm, or one whose key is not configured) is
// refused with 401, like an expired, not yet valid, malformed or badly signed one.

import {
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  type FlattenedJWSInput,
  type JWTHeaderParameters,
  type JWTPayload,
  jwtVerify,
} from "jose";
import { HttpError } from "./http.ts";

const SECRET_ALGORITHM = "HS256";
const SIGNING_KEY_ALGORITHMS = ["ES256", "RS256"];
const JWKS_PATH = "/auth/v1/.well-known/jwks.json";

type RemoteKeySet = ReturnType<typeof createRemoteJWKSet>;
/** One key set per JWKS URL, for the life of the isolate (jose caches the keys inside it). */
const keySets = new Map<string, RemoteKeySet>();
const encoder = new TextEncoder();

/** Where the project publishes its signing keys, given SUPABASE_URL. */
export function jwksUrl(supabaseUrl: string): URL {
  let base: URL;
  try {
    base = new URL(supabaseUrl);
  } catch {
    throw notConfigured(`SUPABASE_URL is not a URL (${JSON.stringify(supabaseUrl)})`);
  }
  if (base.protocol !== "https:" && base.protocol !== "http:") {
    throw notConfigured(`SUPABASE_URL must be an http(s) URL, got ${base.protocol}//`);
  }
  return new URL(base.pathname.replace(/\/+$/, "") + JWKS_PATH, base.origin);
}

function notConfigured(problem: string): HttpError {
  return new HttpError(
    500,
    "auth_not_configured",
    `this function cannot verify JWTs: ${problem}. Set SUPABASE_JWT_SECRET (the project's JWT secret, ` +
      `for HS256 tokens) or SUPABASE_URL (the project's URL: its signing keys, for ES256/RS256 tokens, ` +
      `are read from \${SUPABASE_URL}${JWKS_PATH})`,
  );
}

class KeysUnavailable extends Error {
  constructor(readonly url: URL, cause: unknown) {
    super(`the project's signing keys could not be read from ${url}`, { cause });
  }
}

function keySet(url: URL): RemoteKeySet {
  let keys = keySets.get(url.href);
  if (!keys) {
    keys = createRemoteJWKSet(url);
    keySets.set(url.href, keys);
  }
  return keys;
}

/** Verifies a token with the project's published signing keys (any of them if the token names none). */
async function verifyWithSigningKeys(token: string, url: URL, alg: string): Promise<JWTPayload> {
  const keys = keySet(url);
  const options = { algorithms: [alg] };
  // The key set's own errors other than "no such key" mean the keys could not be read (network,
  // HTTP status, malformed set): the token was not judged, so that is not the caller's fault.
  const resolve = async (header: JWTHeaderParameters, input: FlattenedJWSInput) => {
    try {
      return await keys(header, input);
    } catch (error) {
      if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
        throw error;
      }
      throw new KeysUnavailable(url, error);
    }
  };
  try {
    return (await jwtVerify(token, resolve, options)).payload;
  } catch (error) {
    if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error;
    // The token names no key (kid) and several of the project's keys fit its algorithm: the
    // signature must match one of them.
    let lastError: unknown = error;
    for await (const key of error as unknown as AsyncIterable<CryptoKey>) {
      try {
        return (await jwtVerify(token, key, options)).payload;
      } catch (candidateError) {
        lastError = candidateError;
        if (!(candidateError instanceof errors.JWSSignatureVerificationFailed)) break;
      }
    }
    throw lastError;
  }
}

/** The claims of a token whose signature, algorithm and validity period are verified; else an HttpError. */
export async function verifyJwt(token: string): Promise<JWTPayload> {
  const secret = Deno.env.get("SUPABASE_JWT_SECRET") || null; // an empty secret would sign anything
  const supabaseUrl = Deno.env.get("SUPABASE_URL") || null;
  if (!secret && !supabaseUrl) throw notConfigured("neither SUPABASE_JWT_SECRET nor SUPABASE_URL is set");
  const url = supabaseUrl ? jwksUrl(supabaseUrl) : null;

  let header: JWTHeaderParameters;
  try {
    header = decodeProtectedHeader(token) as JWTHeaderParameters;
  } catch {
    throw new HttpError(401, "invalid_token", "the bearer token is not a JWT");
  }
  const alg = typeof header.alg === "string" ? header.alg : "";
  const accepted = [...(secret ? [SECRET_ALGORITHM] : []), ...(url ? SIGNING_KEY_ALGORITHMS : [])].join(", ");
  if (!alg || alg.toLowerCase() === "none") {
    throw new HttpError(
      401,
      "unsupported_algorithm",
      `unsigned JWTs (alg "none") are refused; accepted: ${accepted}`,
    );
  }
  if (alg === SECRET_ALGORITHM && !secret) {
    throw new HttpError(
      401,
      "unsupported_algorithm",
      `an HS256 JWT is verified with the project's JWT secret, and SUPABASE_JWT_SECRET is not set ` +
        `(accepted here: ${accepted}, with the signing keys at ${url})`,
    );
  }
  if (SIGNING_KEY_ALGORITHMS.includes(alg) && !url) {
    throw new HttpError(
      401,
      "unsupported_algorithm",
      `an ${alg} JWT is verified with the project's signing keys, and SUPABASE_URL is not set ` +
        `(accepted here: ${accepted})`,
    );
  }
  if (alg !== SECRET_ALGORITHM && !SIGNING_KEY_ALGORITHMS.includes(alg)) {
    throw new HttpError(
      401,
      "unsupported_algorithm",
      `JWTs signed with ${JSON.stringify(alg)} are refused; accepted: ${accepted}`,
    );
  }

  try {
    return alg === SECRET_ALGORITHM
      ? (await jwtVerify(token, encoder.encode(secret!), { algorithms: [SECRET_ALGORITHM] })).payload
      : await verifyWithSigningKeys(token, url!, alg);
  } catch (error) {
    throw refusal(error, alg, header.kid, url);
  }
}

function isoDate(seconds: unknown): string {
  return typeof seconds === "number" && Number.isFinite(seconds)
    ? new Date(seconds * 1000).toISOString()
    : String(seconds);
}

/** The answer for a token jose refused (or whose keys could not be read). */
function refusal(error: unknown, alg: string, kid: string | undefined, url: URL | null): HttpError {
  if (error instanceof KeysUnavailable) {
    const reason = error.cause instanceof Error ? `: ${error.cause.message}` : "";
    console.error(`two-tower edge function: ${error.message}${reason}`);
    return new HttpError(503, "auth_unavailable", `${error.message}${reason}; retry`);
  }
  if (error instanceof errors.JWTExpired) {
    return new HttpError(
      401,
      "token_expired",
      `the JWT expired at ${isoDate(error.payload.exp)}; sign in again`,
    );
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === "nbf") {
      return new HttpError(
        401,
        "token_not_yet_valid",
        `the JWT is not valid before ${isoDate(error.payload.nbf)}`,
      );
    }
    return new HttpError(
      401,
      "invalid_token",
      `the JWT's "${error.claim}" claim is invalid (${error.reason})`,
    );
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return new HttpError(
      401,
      "invalid_signature",
      alg === SECRET_ALGORITHM
        ? "the JWT's signature does not match the project's JWT secret"
        : `the JWT's signature does not match the project's signing key (${alg})`,
    );
  }
  if (error instanceof errors.JWKSNoMatchingKey) {
    return new HttpError(
      401,
      "invalid_signature",
      `none of the project's signing keys (${url}) is an ${alg} key` +
        (kid === undefined ? "" : ` with kid ${JSON.stringify(kid)}`),
    );
  }
  if (error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported) {
    return new HttpError(
      401,
      "unsupported_algorithm",
      `the JWT cannot be verified: ${(error as Error).message}`,
    );
  }
  if (error instanceof errors.JOSEError) {
    return new HttpError(401, "invalid_token", `the JWT is malformed: ${error.message}`);
  }
  throw error;
}
