// One user's state for the active model version, read in the caller's transaction, and the
// user's vector: the stored one while it is fresh, else computed with the active user tower.

import type { Tx } from "./db.ts";
import {
  type CleanLike,
  cleanLikes,
  HISTORY_LENGTH,
  microsToIso,
  type Profile,
  type RawLike,
  userInputs,
} from "./features.ts";
import { userTower, type UserTowerRecord } from "./model.ts";

export interface UserState {
  userId: string;
  /** The active version (of the item tower, as recommend_videos reads it); null: no model. */
  version: string | null;
  /** The active user tower; null when there is none (or it is not of the same version). */
  tower: UserTowerRecord | null;
  /** The stored vector of the active version (pgvector text) and the likes it covers. */
  stored: { vector: string; likesUntilUs: bigint | null } | null;
  /** The user's newest clean likes (of any age), oldest first (what the pipeline embeds). */
  likes: CleanLike[];
  profile: Profile | null;
  /** An account, a profile, a like or a vector exists for this id. */
  known: boolean;
}

interface VersionRow {
  version: string;
  model_type: string;
  model_path: string | null;
  feature_spec_path: string | null;
}

/** Everything about the user one request needs: four queries, pipelined in one round trip. */
export async function readUserState(tx: Tx, userId: string, nowUs: bigint): Promise<UserState> {
  const until = microsToIso(nowUs);
  const [versions, stored, history, profile] = await Promise.all([
    tx<VersionRow[]>`
      select version, model_type, model_path, feature_spec_path
      from public.embedding_model_versions where is_active`,
    tx<{ embedding: string; likes_until_us: string | null }[]>`
      select u.embedding::text as embedding,
             ((extract(epoch from u.likes_until) * 1000000)::bigint)::text as likes_until_us
      from public.two_tower_user_embeddings u
      where u.user_id = ${userId}
        and u.model_version = (select m.version from public.embedding_model_versions m
                               where m.is_active and m.model_type = 'item_tower')`,
    tx<RawLike[]>`
      select * from public.two_tower_user_history(${userId}, ${HISTORY_LENGTH}, ${until}::text::timestamptz)`,
    tx<{ known: boolean; age_range: string | null; region: string | null }[]>`
      select * from public.two_tower_user_profile(${userId})`,
  ]);
  const item = versions.find((row) => row.model_type === "item_tower");
  const user = versions.find((row) => row.model_type === "user_tower");
  const tower = item && user && user.version === item.version && user.model_path && user.feature_spec_path
    ? { version: user.version, modelPath: user.model_path, featureSpecPath: user.feature_spec_path }
    : null;
  const row = profile[0];
  return {
    userId,
    version: item?.version ?? null,
    tower,
    stored: stored.length
      ? {
        vector: stored[0].embedding,
        likesUntilUs: stored[0].likes_until_us === null ? null : BigInt(stored[0].likes_until_us),
      }
      : null,
    likes: cleanLikes(history, nowUs),
    profile: row ? { age_range: row.age_range, region: row.region } : null,
    known: Boolean(row?.known),
  };
}

// The pipeline stores likes_until through float seconds (publishing.embed_users), which can
// come back up to 1 microsecond early; a like within 2 microseconds is the one it embedded.
const LIKES_UNTIL_SLACK_US = 2n;

/** The stored vector covers every clean like (likes_until is the newest one it embedded). */
export function storedIsFresh(state: UserState): boolean {
  if (!state.stored) return false;
  const newest = state.likes.at(-1)?.createdUs;
  if (newest === undefined) return true;
  return state.stored.likesUntilUs !== null && newest <= state.stored.likesUntilUs + LIKES_UNTIL_SLACK_US;
}

/** The user's vector by the active user tower; null without a tower or likes. */
export async function computeUserVector(state: UserState): Promise<Float32Array | null> {
  if (!state.tower || state.likes.length === 0) return null;
  const model = await userTower(state.tower);
  return await model.embed(userInputs(model.spec, state.likes, state.profile));
}

/** pgvector's text form; each float32 is written with enough digits to read back exactly. */
export function vectorLiteral(vector: Float32Array): string {
  return `[${Array.from(vector, (x) => String(x)).join(",")}]`;
}

export function nowMicros(): bigint {
  return BigInt(Date.now()) * 1000n;
}
