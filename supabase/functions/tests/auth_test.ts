// Token verification in the functions themselves (fail closed), without the database: the
// project's JWT secret (HS256), the project's signing keys (a JWKS served here on 127.0.0.1 with
// freshly generated ES256 and RS256 key pairs, SUPABASE_URL pointed at it), both, and neither.

import assert from "node:assert/strict";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { authenticate } from "../_shared/auth.ts";
import { endpoint, json } from "../_shared/http.ts";
import { jwksUrl } from "../_shared/jwt.ts";
import { recommendationsHandler } from "../two_tower_recommendations/handler.ts";
import { updateUserEmbeddingHandler } from "../update_user_embedding/handler.ts";
import { post } from "./helpers.ts";

const USER = "6b9f2c1e-3d4a-4e5f-8a7b-9c0d1e2f3a4b";
const SECRET = "the-project-jwt-secret-of-at-least-32-characters";
const encoder = new TextEncoder();

/** Answers 200 with the caller when authenticate() accepts the request's token. */
const probe = endpoint(async (req) => json(200, await authenticate(req)));

/** Runs fn with these environment variables set (undefined: unset), then restores them. */
async function withEnv(vars: Record<string, string | undefined>, fn: () => Promise<void>): Promise<void> {
  const saved = Object.fromEntries(Object.keys(vars).map((name) => [name, Deno.env.get(name)]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  };
  apply(vars);
  try {
    await fn();
  } finally {
    apply(saved);
  }
}

const b64url = (text: string) => btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const now = () => Math.floor(Date.now() / 1000);

async function sign(
  claims: Record<string, unknown>,
  key: CryptoKey | Uint8Array,
  header: { alg: string; kid?: string },
  validity: { exp?: number | string; nbf?: number | string } = {},
): Promise<string> {
  const token = new SignJWT(claims)
    .setProtectedHeader({ typ: "JWT", ...header })
    .setIssuedAt()
    .setExpirationTime(validity.exp ?? "10m");
  if (validity.nbf !== undefined) token.setNotBefore(validity.nbf);
  return await token.sign(key);
}

/** An unsigned token (alg "none"): what decodeJwt used to trust. */
function unsigned(claims: Record<string, unknown>): string {
  const header = b64url(JSON.stringify({ alg: "none", typ: "JWT" }));
  return `${header}.${b64url(JSON.stringify({ exp: now() + 600, ...claims }))}.`;
}

/** The token with its claims replaced and its signature kept: a hand-edited token. */
function tampered(token: string, claims: Record<string, unknown>): string {
  const [header, , signature] = token.split(".");
  return `${header}.${b64url(JSON.stringify({ exp: now() + 600, ...claims }))}.${signature}`;
}

const user = { sub: USER, role: "authenticated", aud: "authenticated" };
const service = { role: "service_role" };

type Case = [label: string, token: string, status: number, code: string];

async function expectAll(cases: Case[], handler = probe): Promise<void> {
  for (const [label, token, status, code] of cases) {
    const answer = await post(handler, {}, token);
    assert.equal(answer.status, status, `${label}: ${JSON.stringify(answer.body)}`);
    assert.equal(answer.contentType, "application/json", label);
    assert.equal(answer.body.error, code, `${label}: ${JSON.stringify(answer.body)}`);
    assert.equal(typeof answer.body.message, "string", label);
  }
}

async function expectCaller(token: string, role: string, userId: string | null): Promise<void> {
  const answer = await post(probe, {}, token);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.equal(answer.body.role, role);
  assert.equal(answer.body.userId, userId);
}

interface KeyPair {
  privateKey: CryptoKey;
  jwk: JWK;
}

async function keyPair(alg: "ES256" | "RS256", kid: string): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  // As Supabase Auth publishes them.
  const jwk = { ...await exportJWK(publicKey), kid, alg, use: "sig", key_ops: ["verify"], ext: true };
  return { privateKey, jwk };
}

interface JwksServer {
  supabaseUrl: string;
  /** How many times the key set was fetched. */
  fetches(): number;
  close(): Promise<void>;
}

/** Serves {keys} at /auth/v1/.well-known/jwks.json on 127.0.0.1 (status: the answer's status). */
function serveJwks(keys: JWK[], status = 200): JwksServer {
  let fetches = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    if (new URL(req.url).pathname !== "/auth/v1/.well-known/jwks.json") {
      return new Response("not found", { status: 404 });
    }
    fetches++;
    return status === 200 ? Response.json({ keys }) : new Response("unavailable", { status });
  });
  return {
    supabaseUrl: `http://127.0.0.1:${server.addr.port}`,
    fetches: () => fetches,
    close: () => server.shutdown(),
  };
}

Deno.test("the JWKS address is SUPABASE_URL's /auth/v1/.well-known/jwks.json", () => {
  assert.equal(
    jwksUrl("https://abcd.supabase.co").href,
    "https://abcd.supabase.co/auth/v1/.well-known/jwks.json",
  );
  assert.equal(jwksUrl("http://kong:8000/").href, "http://kong:8000/auth/v1/.well-known/jwks.json");
  assert.throws(() => jwksUrl("abcd.supabase.co"), /SUPABASE_URL is not a URL/);
  assert.throws(() => jwksUrl("ftp://abcd.supabase.co"), /http\(s\) URL/);
});

Deno.test("with SUPABASE_JWT_SECRET: good HS256 tokens pass; forged, tampered, expired, early, unsigned and other algorithms get 401", async () => {
  await withEnv({ SUPABASE_JWT_SECRET: SECRET, SUPABASE_URL: undefined }, async () => {
    const secret = encoder.encode(SECRET);
    const hs256 = { alg: "HS256" };
    await expectCaller(await sign(user, secret, hs256), "authenticated", USER);
    await expectCaller(
      await sign({ ...user, sub: USER.toUpperCase() }, secret, hs256),
      "authenticated",
      USER,
    );
    await expectCaller(await sign(service, secret, hs256), "service_role", null);
    const es = await keyPair("ES256", "es-key");
    await expectAll([
      [
        "signed with another secret",
        await sign(service, encoder.encode("forged-" + SECRET), hs256),
        401,
        "invalid_signature",
      ],
      [
        "a user's token edited to service_role",
        tampered(await sign(user, secret, hs256), service),
        401,
        "invalid_signature",
      ],
      [
        "a signature from another token",
        tampered(await sign(user, secret, hs256), { ...user, sub: crypto.randomUUID() }),
        401,
        "invalid_signature",
      ],
      ["expired", await sign(user, secret, hs256, { exp: now() - 60 }), 401, "token_expired"],
      ["expired long ago", await sign(service, secret, hs256, { exp: 1 }), 401, "token_expired"],
      ["not valid yet (nbf)", await sign(user, secret, hs256, { nbf: "5m" }), 401, "token_not_yet_valid"],
      ["alg none, service_role", unsigned(service), 401, "unsupported_algorithm"],
      ["alg none, a user", unsigned(user), 401, "unsupported_algorithm"],
      [
        "HS512 with the right secret",
        await sign(service, secret, { alg: "HS512" }),
        401,
        "unsupported_algorithm",
      ],
      [
        "HS384 with the right secret",
        await sign(service, secret, { alg: "HS384" }),
        401,
        "unsupported_algorithm",
      ],
      [
        "ES256 without SUPABASE_URL",
        await sign(service, es.privateKey, { alg: "ES256", kid: "es-key" }),
        401,
        "unsupported_algorithm",
      ],
      ["not a JWT", "not-a-jwt", 401, "invalid_token"],
      [
        "a JWT whose claims are not JSON",
        `${b64url('{"alg":"HS256"}')}.${b64url("nope")}.c2ln`,
        401,
        "invalid_signature",
      ],
      ["the anon role, well signed", await sign({ role: "anon" }, secret, hs256), 401, "unauthorized"],
      ["no role, well signed", await sign({ sub: USER }, secret, hs256), 401, "unauthorized"],
      [
        "authenticated without a user",
        await sign({ role: "authenticated" }, secret, hs256),
        401,
        "invalid_token",
      ],
    ]);
    const expired = await post(probe, {}, await sign(user, secret, hs256, { exp: 1 }));
    assert.match(expired.body.message, /expired at 1970-01-01T00:00:01\.000Z/);
    const none = await post(probe, {}, unsigned(service));
    assert.match(none.body.message, /alg "none"/);
  });
});

Deno.test("with the signing keys at SUPABASE_URL (a local JWKS, ES256 and RS256): good tokens pass, bad ones get 401", async () => {
  const es = await keyPair("ES256", "es-key");
  const rs = await keyPair("RS256", "rs-key");
  const server = serveJwks([es.jwk, rs.jwk]);
  try {
    await withEnv({ SUPABASE_JWT_SECRET: undefined, SUPABASE_URL: server.supabaseUrl }, async () => {
      const esHeader = { alg: "ES256", kid: "es-key" };
      const rsHeader = { alg: "RS256", kid: "rs-key" };
      await expectCaller(await sign(user, es.privateKey, esHeader), "authenticated", USER);
      await expectCaller(await sign(service, es.privateKey, esHeader), "service_role", null);
      await expectCaller(await sign(user, rs.privateKey, rsHeader), "authenticated", USER);
      await expectCaller(await sign(service, rs.privateKey, rsHeader), "service_role", null);

      const otherEs = await keyPair("ES256", "es-key");
      const otherRs = await keyPair("RS256", "rs-key");
      // HMAC keyed with the public key: the classic confusion of a public key for a secret.
      const publicAsSecret = encoder.encode(JSON.stringify(es.jwk));
      await expectAll([
        [
          "ES256 signed with another key under the project's kid",
          await sign(service, otherEs.privateKey, esHeader),
          401,
          "invalid_signature",
        ],
        [
          "RS256 signed with another key under the project's kid",
          await sign(service, otherRs.privateKey, rsHeader),
          401,
          "invalid_signature",
        ],
        [
          "a user's token edited to service_role",
          tampered(await sign(user, es.privateKey, esHeader), service),
          401,
          "invalid_signature",
        ],
        [
          "an unknown kid",
          await sign(service, otherEs.privateKey, { alg: "ES256", kid: "not-a-project-key" }),
          401,
          "invalid_signature",
        ],
        [
          "RS256 under the ES256 key's kid",
          await sign(service, otherRs.privateKey, { alg: "RS256", kid: "es-key" }),
          401,
          "invalid_signature",
        ],
        [
          "ES256 under the RS256 key's kid",
          await sign(service, otherEs.privateKey, { alg: "ES256", kid: "rs-key" }),
          401,
          "invalid_signature",
        ],
        ["expired", await sign(user, es.privateKey, esHeader, { exp: now() - 60 }), 401, "token_expired"],
        [
          "not valid yet (nbf)",
          await sign(user, rs.privateKey, rsHeader, { nbf: "5m" }),
          401,
          "token_not_yet_valid",
        ],
        ["alg none, service_role", unsigned(service), 401, "unsupported_algorithm"],
        [
          "HS256 keyed with the public key",
          await sign(service, publicAsSecret, { alg: "HS256", kid: "es-key" }),
          401,
          "unsupported_algorithm",
        ],
        [
          "HS256 without SUPABASE_JWT_SECRET",
          await sign(service, encoder.encode(SECRET), { alg: "HS256" }),
          401,
          "unsupported_algorithm",
        ],
        [
          "PS256 with the RSA key",
          await sign(service, (await generateKeyPair("PS256")).privateKey, { alg: "PS256", kid: "rs-key" }),
          401,
          "unsupported_algorithm",
        ],
        [
          "EdDSA",
          await sign(service, (await generateKeyPair("EdDSA")).privateKey, { alg: "EdDSA" }),
          401,
          "unsupported_algorithm",
        ],
        [
          "the anon role, well signed",
          await sign({ role: "anon" }, es.privateKey, esHeader),
          401,
          "unauthorized",
        ],
      ]);
      const hs = await post(probe, {}, await sign(service, encoder.encode(SECRET), { alg: "HS256" }));
      assert.match(hs.body.message, /SUPABASE_JWT_SECRET is not set/);
    });
  } finally {
    await server.close();
  }
});

Deno.test("the signing keys are fetched once and cached; a token naming no key is checked against each key of its algorithm", async () => {
  const first = await keyPair("ES256", "first");
  const second = await keyPair("ES256", "second");
  const server = serveJwks([first.jwk, second.jwk]);
  try {
    await withEnv({ SUPABASE_JWT_SECRET: undefined, SUPABASE_URL: server.supabaseUrl }, async () => {
      assert.equal(server.fetches(), 0);
      const tokens = await Promise.all(
        Array.from(
          { length: 10 },
          (_, i) => sign({ ...user, n: i }, first.privateKey, { alg: "ES256", kid: "first" }),
        ),
      );
      const answers = await Promise.all(tokens.map((token) => post(probe, {}, token)));
      assert.deepEqual(answers.map((a) => a.status), Array(10).fill(200));
      for (const token of tokens.slice(0, 3)) await expectCaller(token, "authenticated", USER);
      assert.equal(server.fetches(), 1, "the key set is fetched once, also by concurrent requests");
      // Without a kid: whichever of the project's ES256 keys signed it.
      await expectCaller(await sign(user, second.privateKey, { alg: "ES256" }), "authenticated", USER);
      const stranger = await keyPair("ES256", "stranger");
      await expectAll([[
        "no kid, another key",
        await sign(service, stranger.privateKey, { alg: "ES256" }),
        401,
        "invalid_signature",
      ]]);
      // An unknown kid within the 30 s cool-down does not make the function fetch the keys again.
      await expectAll([[
        "unknown kid",
        await sign(service, stranger.privateKey, { alg: "ES256", kid: "stranger" }),
        401,
        "invalid_signature",
      ]]);
      assert.equal(server.fetches(), 1);
    });
  } finally {
    await server.close();
  }
});

Deno.test("with both variables: HS256 tokens are checked with the secret, ES256 ones with the signing keys", async () => {
  const es = await keyPair("ES256", "es-key");
  const server = serveJwks([es.jwk]);
  try {
    await withEnv({ SUPABASE_JWT_SECRET: SECRET, SUPABASE_URL: server.supabaseUrl }, async () => {
      await expectCaller(await sign(service, encoder.encode(SECRET), { alg: "HS256" }), "service_role", null);
      await expectCaller(
        await sign(user, es.privateKey, { alg: "ES256", kid: "es-key" }),
        "authenticated",
        USER,
      );
      const publicAsSecret = encoder.encode(JSON.stringify(es.jwk));
      await expectAll([
        [
          "HS256 keyed with the public key",
          await sign(service, publicAsSecret, { alg: "HS256", kid: "es-key" }),
          401,
          "invalid_signature",
        ],
        ["alg none", unsigned(service), 401, "unsupported_algorithm"],
      ]);
    });
  } finally {
    await server.close();
  }
});

Deno.test("signing keys that cannot be read: 503, no token trusted", async () => {
  const es = await keyPair("ES256", "es-key");
  const failing = serveJwks([es.jwk], 502);
  const closed = serveJwks([es.jwk]);
  await closed.close(); // nothing listens there any more
  try {
    for (const supabaseUrl of [failing.supabaseUrl, closed.supabaseUrl]) {
      await withEnv({ SUPABASE_JWT_SECRET: undefined, SUPABASE_URL: supabaseUrl }, async () => {
        await expectAll([
          [
            `${supabaseUrl}: a good token`,
            await sign(service, es.privateKey, { alg: "ES256", kid: "es-key" }),
            503,
            "auth_unavailable",
          ],
          [`${supabaseUrl}: alg none`, unsigned(service), 401, "unsupported_algorithm"],
        ]);
      });
    }
  } finally {
    await failing.close();
  }
});

Deno.test("with neither SUPABASE_JWT_SECRET nor SUPABASE_URL: 500 naming both, and no claim is trusted", async () => {
  await withEnv({ SUPABASE_JWT_SECRET: undefined, SUPABASE_URL: undefined }, async () => {
    const forged = await sign(service, encoder.encode("anything"), { alg: "HS256" });
    const cases: Case[] = [
      ["a hand-made service_role token", forged, 500, "auth_not_configured"],
      ["an unsigned service_role token", unsigned(service), 500, "auth_not_configured"],
    ];
    await expectAll(cases);
    // The real functions: nothing reaches the database.
    await expectAll(cases, recommendationsHandler());
    await expectAll(cases, updateUserEmbeddingHandler());
    const answer = await post(updateUserEmbeddingHandler(), { user_id: USER }, forged);
    assert.match(answer.body.message, /SUPABASE_JWT_SECRET/);
    assert.match(answer.body.message, /SUPABASE_URL/);
    assert.match(answer.body.message, /\/auth\/v1\/\.well-known\/jwks\.json/);
    // Still 401 without a token at all.
    assert.equal((await post(probe, {}, null)).status, 401);
  });
  // An empty SUPABASE_JWT_SECRET (or SUPABASE_URL) is unset, not a key.
  await withEnv({ SUPABASE_JWT_SECRET: "", SUPABASE_URL: "" }, async () => {
    await expectAll([[
      "an empty secret",
      await sign(service, encoder.encode("x"), { alg: "HS256" }),
      500,
      "auth_not_configured",
    ]]);
  });
});

Deno.test("the functions refuse forged service_role tokens before touching the database", async () => {
  await withEnv({ SUPABASE_JWT_SECRET: SECRET, SUPABASE_URL: undefined }, async () => {
    const forged = await sign(service, encoder.encode("not-the-project-secret"), { alg: "HS256" });
    for (const handler of [recommendationsHandler(), updateUserEmbeddingHandler()]) {
      await expectAll([
        ["forged service_role", forged, 401, "invalid_signature"],
        ["unsigned service_role", unsigned(service), 401, "unsupported_algorithm"],
        [
          "expired service_role",
          await sign(service, encoder.encode(SECRET), { alg: "HS256" }, { exp: 1 }),
          401,
          "token_expired",
        ],
      ], handler);
    }
  });
});
