// POST {"user_id"?: uuid}
//   -> {"model_version", "user_id", "written", "likes_until", "clean_likes", "milliseconds"}
//
// Recomputes one user's vector with the active user tower (from the user's likes, exactly as
// the pipeline does) and upserts it for the active version with likes_until = the newest like it
// covers; two_tower_recommendations then serves it as the stored vector. A signed-in user
// updates their own vector; the service role (e.g. a database webhook on likes) any user's.
// Reading runs as the caller; only the write uses the owner connection.

import { authenticate, targetUser } from "../_shared/auth.ts";
import { asCaller, db } from "../_shared/db.ts";
import { microsToIso } from "../_shared/features.ts";
import { endpoint, HttpError, json, readBody } from "../_shared/http.ts";
import { computeUserVector, nowMicros, readUserState, vectorLiteral } from "../_shared/user_vector.ts";

export interface Options {
  /** The clock, in epoch microseconds (tests pin it). */
  now?: () => bigint;
}

/** Upserts the vector unless the version is no longer active or a newer vector is stored. */
async function writeVector(
  version: string,
  userId: string,
  vector: string,
  likesUntil: string,
): Promise<"written" | "version_changed" | "newer_stored"> {
  const sql = db();
  return await sql.begin(async (tx) => {
    const written = await tx`
      insert into public.two_tower_user_embeddings (model_version, user_id, embedding, likes_until, created_at)
      select ${version}, ${userId}, ${vector}::vector, ${likesUntil}::text::timestamptz, now()
      where exists (select 1 from public.embedding_model_versions
                    where version = ${version} and model_type = 'user_tower' and is_active)
      on conflict (model_version, user_id) do update
        set embedding = excluded.embedding, likes_until = excluded.likes_until, created_at = excluded.created_at
        where public.two_tower_user_embeddings.likes_until is null
           or public.two_tower_user_embeddings.likes_until <= excluded.likes_until
      returning 1`;
    if (written.length) return "written";
    const active = await tx`select 1 from public.embedding_model_versions
                            where version = ${version} and model_type = 'user_tower' and is_active`;
    return active.length ? "newer_stored" : "version_changed";
  }) as "written" | "version_changed" | "newer_stored";
}

export function updateUserEmbeddingHandler(options: Options = {}): (req: Request) => Promise<Response> {
  const now = options.now ?? nowMicros;
  return endpoint(async (req) => {
    const started = performance.now();
    const caller = await authenticate(req);
    const body = await readBody(req, ["user_id"]);
    const userId = targetUser(caller, body.user_id);

    for (let attempt = 1;; attempt++) {
      const nowUs = now();
      const state = await asCaller(caller, (tx) => readUserState(tx, userId, nowUs));
      if (caller.role === "service_role" && !state.known) {
        throw new HttpError(404, "unknown_user", `no user ${userId}: no account, profile, like or vector`);
      }
      if (!state.version || !state.tower) {
        throw new HttpError(503, "no_active_model", "no two-tower model version is active yet");
      }
      const vector = await computeUserVector(state);
      if (!vector) {
        return json(200, {
          model_version: state.version,
          user_id: userId,
          written: false,
          reason: "no valid likes: recommendations are the popular videos of the user's segment",
          clean_likes: 0,
        });
      }
      const likesUntil = microsToIso(state.likes[state.likes.length - 1].createdUs);
      const outcome = await writeVector(state.version, userId, vectorLiteral(vector), likesUntil);
      if (outcome === "version_changed" && attempt < 2) continue; // a new version went live: again
      if (outcome === "version_changed") {
        throw new HttpError(
          503,
          "version_changed",
          "the active model version changed during the update; retry",
        );
      }
      return json(200, {
        model_version: state.version,
        user_id: userId,
        written: outcome === "written",
        ...(outcome === "newer_stored" ? { reason: "a vector covering newer likes is already stored" } : {}),
        likes_until: likesUntil,
        clean_likes: state.likes.length,
        milliseconds: Math.round(performance.now() - started),
      });
    }
  });
}
