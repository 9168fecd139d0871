// The user tower's inputs, computed exactly as twotower_pipeline computes them (Python:
// twotower_pipeline/model/features.py and validation.py), from one user's stored likes and the
// FeatureSpec JSON exported with the model version. Pure functions: no I/O, no clock.
//
// What "exactly" means here, rule by rule (the Python each rule mirrors in brackets):
// - the user's newest likes of any age [publishing.read_snapshot reads every like;
//   public.two_tower_user_history returns the newest history_length clean ones];
// - clean-up [validation.clean_likes]: likes in timestamp order (no timestamp first); a repeated
//   (user, video) like is dropped, the first one kept, whatever else is wrong with that first
//   one; then likes without a video id or a timestamp, stamped after now, or of a video not in
//   the catalogue are dropped;
// - the history [dataset.UserSequences, features.latest_histories]: the newest history_length
//   clean likes ordered by (time, video id), newest last, front-padded with index 0 / value 0;
// - ids through the vocabularies: known tokens from 2, unknown or missing 1 [Vocabulary.lookup];
// - names (genre, maker, age range, region) normalised before the lookup when the spec says
//   "name_normalisation": "nfkc-lower-1" [features.normalise_name]; a spec without it (written
//   before names were normalised) matches names exactly, as its model was trained;
// - price: z-score of log1p, 0 where missing or negative, float32, clipped to +-8
//   [LogNormaliser.apply on validation.clean_catalogue's prices];
// - ages in days from the newest like of the history (not from now: a user served weeks after their
//   last like gets the inputs training saw), as float64 then float32 [features.latest_histories];
// - age range and region from the user's profile, 1 (unknown) without one [Demographics.lookup].

export const PAD = 0;
export const OOV = 1;
export const FIRST_INDEX = 2;
export const HISTORY_LENGTH = 100;
export const SECONDS_PER_DAY = 86_400;

/** The name normalisation this code applies; a spec names the one its vocabularies were built with. */
export const NAME_NORMALISATION = "nfkc-lower-1";
export const LEGACY_NAME_NORMALISATION = "none";

// The rule of twotower_pipeline.model.features.normalise_text, step for step and class for class
// (a test runs both on the same strings): invisible format characters removed; control characters
// and line/paragraph separators to spaces; NFKC, lower case, NFKC; runs of spaces to one, trimmed.
// toLowerCase is Unicode's full lower-case mapping, as Python's str.lower (not casefold: "ß" stays).
const INVISIBLE =
  /[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufe00-\ufe0f\ufeff\u{e0000}-\u{e007f}\u{e0100}-\u{e01ef}]/gu;
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/gu;
const SPACES = / {2,}/g;

/** features.normalise_name: 「ＶＯＬ．２」 -> "vol.2", 「ｶﾀｶﾅ」 -> 「カタカナ」, "Drama" -> "drama". */
export function normaliseName(value: string): string {
  const text = value.replace(INVISIBLE, "").replace(CONTROL, " ");
  return text.normalize("NFKC").toLowerCase().normalize("NFKC").replace(SPACES, " ").replace(/^ +| +$/g, "");
}

/** String -> index: 0 is padding, 1 out-of-vocabulary, known tokens from 2 (list order). With
 * `normalised`, tokens are stored normalised and each looked-up name is normalised first. */
export class Vocabulary {
  readonly #index = new Map<string, number>();
  readonly size: number;
  readonly normalised: boolean;

  constructor(tokens: readonly string[], normalised = false) {
    tokens.forEach((token, i) => this.#index.set(token, i + FIRST_INDEX));
    this.size = tokens.length + FIRST_INDEX;
    this.normalised = normalised;
  }

  lookup(value: string | null | undefined): number {
    if (typeof value !== "string") return OOV;
    return this.#index.get(this.normalised ? normaliseName(value) : value) ?? OOV;
  }
}

export interface LogNormaliser {
  mean: number;
  std: number;
}

export interface FeatureSpec {
  nameNormalisation: string;
  videos: Vocabulary;
  genres: Vocabulary;
  makers: Vocabulary;
  ageRanges: Vocabulary;
  regions: Vocabulary;
  price: LogNormaliser;
  historyLength: number;
  referenceTime: string;
}

function stringList(payload: Record<string, unknown>, key: string, optional = false): string[] {
  const value = payload[key];
  if (value === undefined && optional) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
    throw new Error(`feature spec: "${key}" must be a list of strings`);
  }
  return value as string[];
}

function normaliser(payload: Record<string, unknown>, key: string): LogNormaliser {
  const value = payload[key] as Record<string, unknown> | undefined;
  if (!value || typeof value.mean !== "number" || typeof value.std !== "number") {
    throw new Error(`feature spec: "${key}" must be {"mean": number, "std": number}`);
  }
  return { mean: value.mean, std: value.std };
}

/** Parses the JSON written by twotower_pipeline.model.features.FeatureSpec.save. */
export function parseFeatureSpec(text: string): FeatureSpec {
  const payload = JSON.parse(text) as Record<string, unknown>;
  const historyLength = payload.history_length ?? HISTORY_LENGTH;
  if (typeof historyLength !== "number" || !Number.isInteger(historyLength) || historyLength < 1) {
    throw new Error(`feature spec: "history_length" must be a positive integer`);
  }
  const nameNormalisation = payload.name_normalisation ?? LEGACY_NAME_NORMALISATION;
  if (nameNormalisation !== NAME_NORMALISATION && nameNormalisation !== LEGACY_NAME_NORMALISATION) {
    throw new Error(
      `feature spec: unknown "name_normalisation" ${JSON.stringify(nameNormalisation)} (this code knows ` +
        `"${NAME_NORMALISATION}" and "${LEGACY_NAME_NORMALISATION}"): deploy the functions of the pipeline's version`,
    );
  }
  const names = nameNormalisation === NAME_NORMALISATION;
  return {
    nameNormalisation,
    videos: new Vocabulary(stringList(payload, "videos")),
    genres: new Vocabulary(stringList(payload, "genres"), names),
    makers: new Vocabulary(stringList(payload, "makers"), names),
    ageRanges: new Vocabulary(stringList(payload, "age_ranges", true), names),
    regions: new Vocabulary(stringList(payload, "regions", true), names),
    price: normaliser(payload, "price"),
    historyLength,
    referenceTime: String(payload.reference_time ?? ""),
  };
}

/** LogNormaliser.apply for one value: float32 z-score of log1p, 0 where missing or negative. */
export function normalise(n: LogNormaliser, value: number | null | undefined): number {
  if (value === null || value === undefined || !Number.isFinite(value) || !(value >= 0)) return 0;
  const z = Math.fround((Math.log1p(value) - n.mean) / n.std);
  return Math.min(8, Math.max(-8, z));
}

/** One stored like as public.two_tower_user_history returns it. */
export interface RawLike {
  video_id: string | null;
  created_us: string | null; // epoch microseconds, exact
  known: boolean; // the video is in the catalogue
  genre: string | null;
  maker: string | null;
  price: number | null;
}

export interface CleanLike {
  videoId: string;
  createdUs: bigint;
  genre: string | null;
  maker: string | null;
  price: number | null;
}

function compareNullsFirst(a: bigint | null, b: bigint | null): number {
  if (a === null || b === null) return a === b ? 0 : a === null ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareText(a: string | null, b: string | null): number {
  if (a === null || b === null) return a === b ? 0 : a === null ? 1 : -1; // SQL: nulls last
  return a < b ? -1 : a > b ? 1 : 0;
}

/** validation.clean_likes for one user's likes read at nowUs: the clean likes, oldest first. */
export function cleanLikes(rows: readonly RawLike[], nowUs: bigint): CleanLike[] {
  const ordered = rows
    .map((row) => ({ row, created: row.created_us === null ? null : BigInt(row.created_us) }))
    .sort((a, b) => compareNullsFirst(a.created, b.created) || compareText(a.row.video_id, b.row.video_id));
  const seen = new Set<string>();
  const kept: CleanLike[] = [];
  for (const { row, created } of ordered) {
    const videoId = row.video_id;
    if (videoId === null) continue;
    const repeated = seen.has(videoId);
    seen.add(videoId);
    if (repeated || created === null || created > nowUs || !row.known) continue;
    kept.push({ videoId, createdUs: created, genre: row.genre, maker: row.maker, price: row.price });
  }
  return kept.sort((a, b) =>
    compareNullsFirst(a.createdUs, b.createdUs) || compareText(a.videoId, b.videoId)
  );
}

/** Epoch microseconds as an ISO 8601 UTC timestamp with all six fractional digits. */
export function microsToIso(us: bigint): string {
  const ms = us / 1000n - (us % 1000n < 0n ? 1n : 0n);
  const micros = us - ms * 1000n;
  const base = new Date(Number(ms)).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  return `${base.slice(0, 23)}${micros.toString().padStart(3, "0")}Z`;
}

/** Epoch seconds as the pipeline computes them: int64 nanoseconds to float64, then / 1e9. */
function epochSeconds(us: bigint): number {
  return Number(us * 1000n) / 1e9;
}

export interface Profile {
  age_range: string | null;
  region: string | null;
}

/** The user tower's named inputs for one user (batch of 1). */
export interface UserInputs {
  hist_video_idx: BigInt64Array;
  hist_genre_idx: BigInt64Array;
  hist_maker_idx: BigInt64Array;
  hist_price: Float32Array;
  hist_age_days: Float32Array;
  user_age_range_idx: BigInt64Array;
  user_region_idx: BigInt64Array;
}

/** HistoryTables.user_inputs(latest_histories(...), Demographics.lookup(...)) for one user. */
export function userInputs(
  spec: FeatureSpec,
  likes: readonly CleanLike[],
  profile: Profile | null,
): UserInputs {
  const h = spec.historyLength;
  const inputs: UserInputs = {
    hist_video_idx: new BigInt64Array(h),
    hist_genre_idx: new BigInt64Array(h),
    hist_maker_idx: new BigInt64Array(h),
    hist_price: new Float32Array(h),
    hist_age_days: new Float32Array(h),
    user_age_range_idx: BigInt64Array.of(BigInt(profile ? spec.ageRanges.lookup(profile.age_range) : OOV)),
    user_region_idx: BigInt64Array.of(BigInt(profile ? spec.regions.lookup(profile.region) : OOV)),
  };
  const recent = likes.slice(Math.max(0, likes.length - h));
  // Ages are measured from the newest like of the history, whenever the history is read.
  const reference = recent.length ? epochSeconds(recent[recent.length - 1].createdUs) : 0;
  const offset = h - recent.length;
  recent.forEach((like, i) => {
    const j = offset + i;
    inputs.hist_video_idx[j] = BigInt(spec.videos.lookup(like.videoId));
    inputs.hist_genre_idx[j] = BigInt(spec.genres.lookup(like.genre));
    inputs.hist_maker_idx[j] = BigInt(spec.makers.lookup(like.maker));
    inputs.hist_price[j] = normalise(spec.price, like.price);
    inputs.hist_age_days[j] = (reference - epochSeconds(like.createdUs)) / SECONDS_PER_DAY;
  });
  return inputs;
}
