// Top-K for a user: public.recommend_videos when the stored vector serves, the same ranking
// (public.two_tower_rank_videos) for a vector computed here, and optional genre diversity.

import type { Tx } from "./db.ts";

export interface Recommendation {
  video_id: string;
  score: number;
}

export interface Ranked extends Recommendation {
  model_version: string;
}

/** recommend_videos(user, k): the stored vector of the active version, or popular videos. */
export async function recommendVideos(tx: Tx, userId: string, k: number): Promise<Ranked[]> {
  return await tx<Ranked[]>`
    select video_id::text as video_id, score, model_version from public.recommend_videos(${userId}, ${k})`;
}

/** The same ranking with a given vector (pgvector text; null: popular videos) and version. */
export async function rankVideos(
  tx: Tx,
  userId: string,
  vector: string | null,
  version: string | null,
  k: number,
): Promise<Ranked[]> {
  return await tx<Ranked[]>`
    select video_id::text as video_id, score, model_version
    from public.two_tower_rank_videos(${userId}, ${vector}::vector, ${version}, ${k})`;
}

export async function videoGenres(tx: Tx, ids: string[]): Promise<Map<string, string | null>> {
  if (!ids.length) return new Map();
  const rows = await tx<{ video_id: string; genre: string | null }[]>`
    select video_id::text as video_id, genre from public.two_tower_video_genres(${ids}::uuid[])`;
  return new Map(rows.map((row) => [row.video_id, row.genre]));
}

/** How many candidates diversity re-ranking draws from for k results. */
export function candidatePool(k: number): number {
  return Math.min(1000, Math.max(5 * k, 50));
}

/**
 * Greedy genre diversity: repeatedly take the candidate with the best score minus
 * strength x (score range of the candidates) x (videos of its genre taken so far). strength 0
 * keeps the ranking; 0.1 makes each repeat of a genre cost a tenth of the candidates' score
 * range. Scores are returned unchanged, in the new order.
 */
export function diversify<T extends Recommendation>(
  candidates: readonly T[],
  genres: Map<string, string | null>,
  k: number,
  strength: number,
): T[] {
  if (strength <= 0 || candidates.length <= 1) return candidates.slice(0, k);
  const scores = candidates.map((c) => c.score);
  const penalty = strength * ((Math.max(...scores) - Math.min(...scores)) || 1);
  const taken = new Map<string, number>();
  const remaining = [...candidates];
  const picked: T[] = [];
  while (picked.length < k && remaining.length) {
    let best = 0;
    let bestValue = -Infinity;
    remaining.forEach((candidate, i) => {
      const value = candidate.score - penalty * (taken.get(genres.get(candidate.video_id) ?? "") ?? 0);
      if (value > bestValue) [best, bestValue] = [i, value];
    });
    const [chosen] = remaining.splice(best, 1);
    const genre = genres.get(chosen.video_id) ?? "";
    taken.set(genre, (taken.get(genre) ?? 0) + 1);
    picked.push(chosen);
  }
  return picked;
}
