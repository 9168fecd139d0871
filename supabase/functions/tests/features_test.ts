// The pipeline's clean-up and feature rules, as pure functions (no database needed).

import assert from "node:assert/strict";
import {
  cleanLikes,
  microsToIso,
  normalise,
  normaliseName,
  OOV,
  parseFeatureSpec,
  type RawLike,
  userInputs,
} from "../_shared/features.ts";
import { diversify } from "../_shared/ranking.ts";
import { vectorLiteral } from "../_shared/user_vector.ts";

const like = (video_id: string | null, created_us: string | null, known = true): RawLike => ({
  video_id,
  created_us,
  known,
  genre: "Drama",
  maker: "M",
  price: 1000,
});

Deno.test("clean-up keeps the first of repeated likes and drops what the pipeline drops", () => {
  const now = 1_000_000n;
  const kept = cleanLikes([
    like("b", "300"),
    like("a", "100"),
    like("a", "200"), // repeat: the first (100) is kept
    like("c", null), // no timestamp: dropped, and it is the first like of c...
    like("c", "150"), // ...so this one is a repeat: dropped too (as validation.clean_likes does)
    like(null, "120"), // no video id
    like("d", "2000000"), // after now
    like("e", "130", false), // not in the catalogue
    like("f", "100"), // same time as a: ordered by video id
  ], now);
  assert.deepEqual(kept.map((k) => [k.videoId, k.createdUs]), [["a", 100n], ["f", 100n], ["b", 300n]]);
});

Deno.test("timestamps keep their microseconds", () => {
  assert.equal(microsToIso(1_795_910_675_621_944n), "2026-11-29T00:04:35.621944Z");
  assert.equal(microsToIso(0n), "1970-01-01T00:00:00.000000Z");
});

Deno.test("prices are normalised like LogNormaliser.apply", () => {
  const n = { mean: 7, std: 0.5 };
  assert.equal(normalise(n, null), 0);
  assert.equal(normalise(n, -5), 0);
  assert.equal(normalise(n, Number.NaN), 0);
  assert.equal(normalise(n, 1e300), 8); // clipped
  assert.equal(normalise(n, 1000), Math.fround((Math.log1p(1000) - 7) / 0.5));
});

Deno.test("inputs: newest last, front-padded, ages from the newest like, unknown ids out of vocabulary", () => {
  const spec = parseFeatureSpec(JSON.stringify({
    videos: ["v1", "v2"],
    genres: ["Drama"],
    makers: ["M"],
    price: { mean: 7, std: 0.5 },
    age_ranges: ["25-34"],
    regions: ["Kanto"],
    history_length: 4,
    reference_time: "2026-01-01T00:00:00+00:00",
  }));
  const day = 86_400_000_000n;
  const likes = [
    { videoId: "v1", createdUs: 8n * day, genre: "Drama", maker: "M", price: 1000 },
    { videoId: "unknown", createdUs: 9n * day, genre: null, maker: "other", price: -1 },
  ];
  const inputs = userInputs(spec, likes, { age_range: "25-34", region: null });
  assert.deepEqual([...inputs.hist_video_idx], [0n, 0n, 2n, BigInt(OOV)]);
  assert.deepEqual([...inputs.hist_genre_idx], [0n, 0n, 2n, 1n]);
  assert.deepEqual([...inputs.hist_maker_idx], [0n, 0n, 2n, 1n]);
  assert.deepEqual([...inputs.hist_price], [0, 0, Math.fround((Math.log1p(1000) - 7) / 0.5), 0]);
  // Measured from the newest like (day 9), whenever the request comes: the same inputs training saw.
  assert.deepEqual([...inputs.hist_age_days], [0, 0, 1, 0]);
  assert.deepEqual([...inputs.user_age_range_idx], [2n]);
  assert.deepEqual([...inputs.user_region_idx], [1n]);
  const noProfile = userInputs(spec, likes, null);
  assert.deepEqual([...noProfile.user_age_range_idx, ...noProfile.user_region_idx], [1n, 1n]);
});

Deno.test("names are normalised as the pipeline normalises them: NFKC, lower case, invisible characters out", () => {
  const cases: [string, string][] = [
    ["ＶＯＬ．２", "vol.2"],
    ["Vol.2", "vol.2"],
    ["ｶﾀｶﾅ", "カタカナ"],
    ["ﾄﾞﾗﾏ", "ドラマ"],
    ["か\u3099", "が"], // a kana and a separate voicing mark: one kana
    ["佐藤\u3000亜香子", "佐藤 亜香子"], // ideographic space
    ["  GRAND港ﾋﾟｸﾁｬｰｽﾞ  ", "grand港ピクチャーズ"],
    ["㈱ＮＥＯＮ", "(株)neon"],
    ["Straße", "straße"], // lower case, not case folding: "ß" stays (as in Python's str.lower)
    ["ΟΔΟΣ", "οδος"], // final sigma, as Python's str.lower
    ["a\u200bb\u202ec\ufeffd", "abcd"], // zero-width space, bidi override, BOM: removed
    ["葛\u{e0100}飾", "葛飾"], // ideographic variation selector: removed
    ["a\x00b\tc\n\nd", "a b c d"], // control characters: spaces, then one space
    ["", ""],
  ];
  for (const [raw, normalised] of cases) {
    assert.equal(normaliseName(raw), normalised, JSON.stringify(raw));
    assert.equal(normaliseName(normaliseName(raw)), normalised, `not stable: ${JSON.stringify(raw)}`);
  }
});

Deno.test("a current spec's names match in any width and case; an older spec's match exactly", () => {
  const payload = {
    videos: ["v1"],
    genres: ["ドラマ", "sf"],
    makers: ["grand港ピクチャーズ"],
    price: { mean: 7, std: 0.5 },
    age_ranges: ["25-34"],
    regions: ["関東"],
    history_length: 2,
    reference_time: "2026-01-01T00:00:00+00:00",
  };
  const current = parseFeatureSpec(JSON.stringify({ ...payload, name_normalisation: "nfkc-lower-1" }));
  assert.equal(current.genres.lookup("ﾄﾞﾗﾏ"), 2);
  assert.equal(current.genres.lookup("ＳＦ"), 3);
  assert.equal(current.genres.lookup("SF"), 3);
  assert.equal(current.makers.lookup("ＧＲＡＮＤ港ﾋﾟｸﾁｬｰｽﾞ"), 2);
  assert.equal(current.regions.lookup(" 関東 "), 2);
  assert.equal(current.genres.lookup("ホラー"), OOV);
  assert.equal(current.genres.lookup(null), OOV);
  assert.equal(current.videos.normalised, false); // ids are never normalised
  const likes = [
    { videoId: "v1", createdUs: 1n, genre: "ﾄﾞﾗﾏ", maker: "GRAND港ピクチャーズ", price: 1000 },
    { videoId: "v1", createdUs: 2n, genre: "ＳＦ", maker: "grand港ﾋﾟｸﾁｬｰｽﾞ", price: 1000 },
  ];
  const inputs = userInputs(current, likes, { age_range: "25-34", region: "関東" });
  assert.deepEqual([...inputs.hist_genre_idx], [2n, 3n]);
  assert.deepEqual([...inputs.hist_maker_idx], [2n, 2n]);
  assert.deepEqual([...inputs.user_region_idx], [2n]);

  const older = parseFeatureSpec(JSON.stringify(payload)); // written before names were normalised
  assert.equal(older.nameNormalisation, "none");
  assert.equal(older.genres.lookup("ドラマ"), 2);
  assert.equal(older.genres.lookup("ﾄﾞﾗﾏ"), OOV);
  assert.equal(older.genres.lookup("SF"), OOV);
  assert.throws(
    () => parseFeatureSpec(JSON.stringify({ ...payload, name_normalisation: "nfkc-casefold-9" })),
    /unknown "name_normalisation"/,
  );
});

Deno.test("float32 vectors survive pgvector's text form", () => {
  const v = Float32Array.of(0.1, -1 / 3, 1e-8, 0.21014903485774994);
  const back = Float32Array.from(JSON.parse(vectorLiteral(v)) as number[]);
  assert.deepEqual([...back], [...v]);
});

Deno.test("diversity re-ranking spreads genres and keeps scores", () => {
  const candidates = [
    { video_id: "a1", score: 0.9 },
    { video_id: "a2", score: 0.89 },
    { video_id: "a3", score: 0.88 },
    { video_id: "b1", score: 0.5 },
    { video_id: "c1", score: 0.1 },
  ];
  const genres = new Map([["a1", "A"], ["a2", "A"], ["a3", "A"], ["b1", "B"], ["c1", "C"]]);
  assert.deepEqual(diversify(candidates, genres, 3, 0).map((c) => c.video_id), ["a1", "a2", "a3"]);
  assert.deepEqual(diversify(candidates, genres, 3, 0.5).map((c) => c.video_id), ["a1", "b1", "a2"]);
  assert.deepEqual(diversify(candidates, genres, 3, 1).map((c) => c.video_id), ["a1", "b1", "c1"]);
  assert.equal(diversify(candidates, genres, 3, 1)[1].score, 0.5);
});
