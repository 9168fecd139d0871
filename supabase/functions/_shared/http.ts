// JSON requests and answers: validation, errors with the right status, CORS.

export const corsHeaders: Record<string, string> = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Headers": "authorization, x-client-info, apikey, content-type",
  "Access-Control-Allow-Methods": "POST, OPTIONS",
};

/** An error answered as {"error": code, "message": text} with this status. */
export class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = "HttpError";
  }
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...corsHeaders, "Content-Type": "application/json", ...headers },
  });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: unknown): value is string {
  return typeof value === "string" && UUID.test(value);
}

/** The request's JSON object (an empty body is {}); only the given keys are accepted. */
export async function readBody(req: Request, allowed: readonly string[]): Promise<Record<string, unknown>> {
  const text = await req.text();
  if (text.trim() === "") return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new HttpError(400, "invalid_json", "the request body is not valid JSON");
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new HttpError(400, "invalid_body", "the request body must be a JSON object");
  }
  const unknown = Object.keys(body).filter((key) => !allowed.includes(key));
  if (unknown.length) {
    throw new HttpError(
      400,
      "unknown_field",
      `unknown field(s) ${unknown.map((k) => JSON.stringify(k)).join(", ")}; accepted: ${allowed.join(", ")}`,
    );
  }
  return body as Record<string, unknown>;
}

export function integerField(
  body: Record<string, unknown>,
  key: string,
  fallback: number,
  min: number,
  max: number,
): number {
  return boundedNumber(body, key, fallback, min, max, "an integer");
}

export function numberField(
  body: Record<string, unknown>,
  key: string,
  fallback: number,
  min: number,
  max: number,
): number {
  return boundedNumber(body, key, fallback, min, max, "a number");
}

function boundedNumber(
  body: Record<string, unknown>,
  key: string,
  fallback: number,
  min: number,
  max: number,
  kind: "an integer" | "a number",
): number {
  const value = body[key];
  if (value === undefined || value === null) return fallback;
  const valid = typeof value === "number" &&
    (kind === "an integer" ? Number.isInteger(value) : Number.isFinite(value)) &&
    value >= min && value <= max;
  if (!valid) {
    throw new HttpError(
      400,
      `invalid_${key}`,
      `"${key}" must be ${kind} from ${min} to ${max}, got ${JSON.stringify(value)}`,
    );
  }
  return value as number;
}

/** A Postgres error's SQLSTATE, if the error came from the database. */
function sqlState(error: unknown): string | undefined {
  const candidate = error as { code?: unknown; name?: unknown };
  return candidate?.name === "PostgresError" && typeof candidate.code === "string"
    ? candidate.code
    : undefined;
}

const CONNECTION_ERRORS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "ETIMEDOUT",
]);

/** The answer for any error thrown while handling a request. */
export function errorResponse(error: unknown): Response {
  if (error instanceof HttpError) {
    return json(error.status, { error: error.code, message: error.message });
  }
  const state = sqlState(error);
  if (state === "42501") {
    return json(403, { error: "forbidden", message: (error as Error).message });
  }
  if (state === "22023" || state === "22P02") {
    return json(400, { error: "invalid_request", message: (error as Error).message });
  }
  if (
    state === "40001" || state === "40P01" || state === "57014" || state?.startsWith("08") ||
    state === "53300"
  ) {
    return json(503, { error: "unavailable", message: "the database is busy; retry" }, {
      "Retry-After": "1",
    });
  }
  const code = (error as { code?: unknown })?.code;
  if (typeof code === "string" && CONNECTION_ERRORS.has(code)) {
    return json(503, { error: "unavailable", message: "the database cannot be reached; retry" }, {
      "Retry-After": "1",
    });
  }
  console.error("two-tower edge function error:", error);
  return json(500, { error: "internal", message: "internal error" });
}

/** Wraps a handler: CORS preflight, POST only, every error as JSON. */
export function endpoint(handle: (req: Request) => Promise<Response>): (req: Request) => Promise<Response> {
  return async (req: Request): Promise<Response> => {
    if (req.method === "OPTIONS") return new Response(null, { status: 204, headers: corsHeaders });
    if (req.method !== "POST") {
      return json(405, { error: "method_not_allowed", message: "use POST with a JSON body" }, {
        Allow: "POST, OPTIONS",
      });
    }
    try {
      return await handle(req);
    } catch (error) {
      return errorResponse(error);
    }
  };
}
