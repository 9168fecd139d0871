// POST {"user_id"?: uuid, "k"?: 1..100, "diversity"?: 0..1}
//   -> {"model_version", "recommendations": [{"video_id", "score"}], "user_vector"}
//
// The user is the caller's (JWT sub); the service role names one with user_id. The answer is
// recommend_videos' while the user's stored vector of the active version covers their likes;
// when it is missing or older than their newest like, the vector is computed here with the
// active user tower and ranked by the same SQL. No likes: the active version's popular videos.
// "user_vector" says which: "stored", "computed" or "none".

import { authenticate, targetUser } from "../_shared/auth.ts";
import { asCaller } from "../_shared/db.ts";
import { endpoint, HttpError, integerField, json, numberField, readBody } from "../_shared/http.ts";
import {
  candidatePool,
  diversify,
  type Ranked,
  rankVideos,
  recommendVideos,
  videoGenres,
} from "../_shared/ranking.ts";
import {
  computeUserVector,
  nowMicros,
  readUserState,
  storedIsFresh,
  vectorLiteral,
} from "../_shared/user_vector.ts";

export const MAX_K = 100;

export interface Options {
  /** The clock, in epoch microseconds (tests pin it). */
  now?: () => bigint;
}

export function recommendationsHandler(options: Options = {}): (req: Request) => Promise<Response> {
  const now = options.now ?? nowMicros;
  return endpoint(async (req) => {
    const caller = await authenticate(req);
    const body = await readBody(req, ["user_id", "k", "diversity"]);
    const userId = targetUser(caller, body.user_id);
    const k = integerField(body, "k", 10, 1, MAX_K);
    const diversity = numberField(body, "diversity", 0, 0, 1);
    const nowUs = now();

    const answer = await asCaller(caller, async (tx) => {
      const state = await readUserState(tx, userId, nowUs);
      if (caller.role === "service_role" && !state.known) {
        throw new HttpError(404, "unknown_user", `no user ${userId}: no account, profile, like or vector`);
      }
      let source: "stored" | "computed" | "none" = "none";
      let vector: string | null = null;
      if (state.version && state.stored && storedIsFresh(state)) {
        source = "stored";
        vector = state.stored.vector;
      } else if (state.version) {
        const computed = await computeUserVector(state);
        if (computed) {
          source = "computed";
          vector = vectorLiteral(computed);
        } else if (state.stored) { // no user tower to compute with: the stored vector still serves
          source = "stored";
          vector = state.stored.vector;
        }
      }
      let ranked: Ranked[];
      if (diversity > 0) {
        const candidates = await rankVideos(tx, userId, vector, state.version, candidatePool(k));
        const genres = await videoGenres(tx, candidates.map((c) => c.video_id));
        ranked = diversify(candidates, genres, k, diversity);
      } else if (source === "computed") {
        ranked = await rankVideos(tx, userId, vector, state.version, k);
      } else {
        ranked = await recommendVideos(tx, userId, k);
      }
      return {
        model_version: ranked[0]?.model_version ?? state.version ?? "popularity",
        recommendations: ranked.map(({ video_id, score }) => ({ video_id, score })),
        user_vector: source,
      };
    });
    return json(200, answer);
  });
}
