// Both Edge Functions against the database the pytest fixture prepared (a model the pipeline
// trained, exported and activated; its user vectors written by the pipeline at as_of).
// Run by twotower_pipeline_tests/test_edge_functions.py; skipped without TWO_TOWER_EDGE_FIXTURE.

import assert from "node:assert/strict";
import { asCaller, closeDb } from "../_shared/db.ts";
import { microsToIso } from "../_shared/features.ts";
import { clearModelCache, readResource, userTower } from "../_shared/model.ts";
import { computeUserVector, nowMicros, readUserState } from "../_shared/user_vector.ts";
import { recommendationsHandler } from "../two_tower_recommendations/handler.ts";
import { updateUserEmbeddingHandler } from "../update_user_embedding/handler.ts";
import {
  closeOwner,
  dbTest,
  fixture,
  jwt,
  maxAbsDiff,
  owner,
  post,
  serviceCaller,
  serviceToken,
  userCaller,
  userToken,
} from "./helpers.ts";

const fx = fixture!;
const recommend = recommendationsHandler();
const update = updateUserEmbeddingHandler();

async function expectedRecommendations(userId: string, k: number) {
  const rows = await owner()<{ video_id: string; score: number; model_version: string }[]>`
    select video_id::text as video_id, score, model_version from public.recommend_videos(${userId}, ${k})`;
  return {
    version: rows[0]?.model_version,
    recommendations: rows.map(({ video_id, score }) => ({ video_id, score })),
  };
}

Deno.test({
  name: "the user vector computed in Deno matches the pipeline's (ONNX in Python) within 1e-5",
  ...dbTest,
  async fn() {
    const asOf = BigInt(fx.as_of_us);
    for (const [label, userId] of Object.entries(fx.parity_users)) {
      const reference = fx.references[userId];
      for (const caller of [serviceCaller, userCaller(userId)]) {
        const state = await asCaller(caller, (tx) => readUserState(tx, userId, asOf));
        assert.equal(state.version, fx.version);
        // The same clean-up: the newest clean like is the likes_until the pipeline stored.
        // (The pipeline's likes_until goes through float seconds: it may be 1 microsecond early.)
        const newest = state.likes.at(-1)?.createdUs ?? -1n;
        const until = BigInt(reference.likes_until_us);
        assert.ok(newest >= until && newest - until <= 1n, `${label}: ${newest} vs ${until}`);
        const vector = await computeUserVector(state);
        assert.ok(vector, label);
        const diff = maxAbsDiff(vector, reference.vector);
        assert.ok(diff <= 1e-5, `${label} user ${userId}: max abs difference ${diff}`);
        if (caller === serviceCaller) {
          console.log(`${label}: ${state.likes.length} clean likes, max |diff| ${diff}`);
        }
      }
    }
  },
});

Deno.test({
  name: "answers equal recommend_videos for users whose stored vector is fresh",
  ...dbTest,
  async fn() {
    assert.ok(fx.fresh_users.length >= 3);
    for (const userId of fx.fresh_users) {
      for (const k of [1, 10, 100]) {
        const expected = await expectedRecommendations(userId, k);
        const mine = await post(recommend, { k }, await userToken(userId));
        assert.equal(mine.status, 200, JSON.stringify(mine.body));
        assert.equal(mine.contentType, "application/json");
        assert.deepEqual(mine.body, {
          model_version: fx.version,
          recommendations: expected.recommendations,
          user_vector: "stored",
        });
        const asService = await post(recommend, { user_id: userId, k }, await serviceToken());
        assert.deepEqual(asService.body, mine.body);
      }
      // The ranking used for computed vectors is recommend_videos' ranking: same vector, same answer.
      const sameVector = await owner()<{ video_id: string; score: number }[]>`
        select r.video_id::text as video_id, r.score
        from public.two_tower_rank_videos(${userId},
          (select embedding from public.two_tower_user_embeddings
           where model_version = ${fx.version} and user_id = ${userId}), ${fx.version}, 25) r`;
      assert.deepEqual([...sameVector], (await expectedRecommendations(userId, 25)).recommendations);
    }
    // Default k is 10; liked videos never come back.
    const userId = fx.fresh_users[0];
    const answer = await post(recommend, {}, await userToken(userId));
    assert.equal(answer.body.recommendations.length, 10);
    const liked = new Set(
      (await owner()`select video_id::text as v from public.likes where user_id = ${userId}`).map((r) => r.v),
    );
    const top = await post(recommend, { k: 100 }, await userToken(userId));
    assert.ok(top.body.recommendations.every((r: { video_id: string }) => !liked.has(r.video_id)));
  },
});

Deno.test({
  name: "a stale vector is computed here, ranked like recommend_videos, and stored by update_user_embedding",
  ...dbTest,
  async fn() {
    const { id: userId, video_id: newVideo, liked_at_us: likedAt } = fx.stale_user;
    const now = nowMicros();
    const pinnedRecommend = recommendationsHandler({ now: () => now });
    const pinnedUpdate = updateUserEmbeddingHandler({ now: () => now });
    const k = 20;

    const computed = await post(pinnedRecommend, { k }, await userToken(userId));
    assert.equal(computed.status, 200, JSON.stringify(computed.body));
    assert.equal(computed.body.user_vector, "computed");
    assert.equal(computed.body.model_version, fx.version);
    assert.equal(computed.body.recommendations.length, k);
    assert.ok(computed.body.recommendations.every((r: { video_id: string }) => r.video_id !== newVideo));
    // The stored vector (before the new like) would answer differently.
    const before = await expectedRecommendations(userId, k);
    assert.notDeepEqual(before.recommendations, computed.body.recommendations);

    const updated = await post(pinnedUpdate, { user_id: userId }, await serviceToken());
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    assert.equal(updated.body.written, true);
    assert.equal(updated.body.model_version, fx.version);
    assert.equal(updated.body.likes_until, microsToIso(BigInt(likedAt)));
    const [row] = await owner()`
      select ((extract(epoch from likes_until) * 1000000)::bigint)::text as until, vector_norm(embedding) as norm
      from public.two_tower_user_embeddings where model_version = ${fx.version} and user_id = ${userId}`;
    assert.equal(row.until, likedAt);
    assert.ok(Math.abs(row.norm - 1) < 1e-3);

    // recommend_videos with the vector written equals what the function answered from it.
    const after = await expectedRecommendations(userId, k);
    assert.equal(after.recommendations.length, k);
    after.recommendations.forEach((r, i) => {
      assert.equal(r.video_id, computed.body.recommendations[i].video_id);
      assert.ok(Math.abs(r.score - computed.body.recommendations[i].score) < 1e-6);
    });
    const stored = await post(pinnedRecommend, { k }, await userToken(userId));
    assert.equal(stored.body.user_vector, "stored");
    assert.deepEqual(stored.body.recommendations, after.recommendations);

    // A signed-in user may refresh their own vector (nothing newer: written again, same time).
    const own = await post(pinnedUpdate, {}, await userToken(userId));
    assert.equal(own.status, 200, JSON.stringify(own.body));
    assert.equal(own.body.written, true);
    assert.ok(own.body.milliseconds < 2000, `update took ${own.body.milliseconds} ms`);
  },
});

Deno.test({
  name: "a user without likes gets the popular videos recommend_videos gives",
  ...dbTest,
  async fn() {
    const answer = await post(recommend, { k: 15 }, await userToken(fx.new_user));
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.user_vector, "none");
    assert.equal(answer.body.model_version, fx.version);
    assert.deepEqual(
      answer.body.recommendations,
      (await expectedRecommendations(fx.new_user, 15)).recommendations,
    );
    const scores = answer.body.recommendations.map((r: { score: number }) => r.score);
    assert.deepEqual(scores, [...scores].sort((a, b) => b - a)); // popularity, descending
    const nothing = await post(update, {}, await userToken(fx.new_user));
    assert.equal(nothing.status, 200);
    assert.equal(nothing.body.written, false);
  },
});

Deno.test({
  name: "diversity re-ranking is off by default and spreads genres when asked",
  ...dbTest,
  async fn() {
    const userId = fx.parity_users.heavy;
    const token = await userToken(userId);
    const plain = await post(recommend, { k: 10 }, token);
    const zero = await post(recommend, { k: 10, diversity: 0 }, token);
    assert.deepEqual(zero.body, plain.body);
    const diverse = await post(recommend, { k: 10, diversity: 0.5 }, token);
    assert.equal(diverse.status, 200, JSON.stringify(diverse.body));
    assert.equal(diverse.body.recommendations.length, 10);
    const genresOf = async (ids: string[]) =>
      new Set(
        (await owner()`select genre from public.videos where id = any(${ids}::uuid[])`).map((r) => r.genre),
      );
    const ids = (a: { body: { recommendations: { video_id: string }[] } }) =>
      a.body.recommendations.map((r) => r.video_id);
    assert.ok((await genresOf(ids(diverse))).size >= (await genresOf(ids(plain))).size);
    assert.equal(ids(diverse)[0], ids(plain)[0]); // the best video stays first
    const pool = new Set((await expectedRecommendations(userId, 50)).recommendations.map((r) => r.video_id));
    assert.ok(ids(diverse).every((id: string) => pool.has(id)));
  },
});

Deno.test({
  name: "bad requests get clear 4xx JSON answers",
  ...dbTest,
  async fn() {
    const user = fx.fresh_users[0];
    const cases: [
      string,
      (req: Request) => Promise<Response>,
      unknown,
      string | null,
      number,
      string,
      string?,
    ][] = [
      ["no Authorization header", recommend, {}, null, 401, "unauthorized"],
      [
        "a JWT signed with another secret",
        recommend,
        {},
        await jwt({ sub: user, role: "authenticated" }, {
          secret: "not-the-project-secret",
        }),
        401,
        "invalid_signature",
      ],
      [
        "an expired JWT",
        recommend,
        {},
        await jwt({ sub: user, role: "authenticated" }, { expiresIn: 1 } /* exp: 1970 */),
        401,
        "token_expired",
      ],
      ["the anon role", recommend, {}, await jwt({ role: "anon" }), 401, "unauthorized"],
      ["k = 0", recommend, { k: 0 }, await userToken(user), 400, "invalid_k"],
      ["k = 10000", recommend, { k: 10000 }, await userToken(user), 400, "invalid_k"],
      ["k as a string", recommend, { k: "5" }, await userToken(user), 400, "invalid_k"],
      ["k not an integer", recommend, { k: 2.5 }, await userToken(user), 400, "invalid_k"],
      [
        "a malformed user id",
        recommend,
        { user_id: "42; drop table likes" },
        await serviceToken(),
        400,
        "invalid_user_id",
      ],
      [
        "a malformed user id from a user",
        recommend,
        { user_id: "nope" },
        await userToken(user),
        400,
        "invalid_user_id",
      ],
      ["an unknown user", recommend, { user_id: fx.unknown_user }, await serviceToken(), 404, "unknown_user"],
      [
        "another user's recommendations",
        recommend,
        { user_id: fx.fresh_users[1] },
        await userToken(user),
        403,
        "forbidden",
      ],
      ["the service role without a user", recommend, {}, await serviceToken(), 400, "missing_user_id"],
      ["invalid JSON", recommend, "{k: 3", await userToken(user), 400, "invalid_json"],
      ["a JSON array", recommend, "[1]", await userToken(user), 400, "invalid_body"],
      ["an unknown field", recommend, { limit: 3 }, await userToken(user), 400, "unknown_field"],
      [
        "diversity out of range",
        recommend,
        { diversity: 2 },
        await userToken(user),
        400,
        "invalid_diversity",
      ],
      ["GET", recommend, null, await userToken(user), 405, "method_not_allowed", "GET"],
      ["update: no Authorization header", update, {}, null, 401, "unauthorized"],
      ["update: a malformed user id", update, { user_id: "x" }, await serviceToken(), 400, "invalid_user_id"],
      [
        "update: an unknown user",
        update,
        { user_id: fx.unknown_user },
        await serviceToken(),
        404,
        "unknown_user",
      ],
      [
        "update: another user's vector",
        update,
        { user_id: fx.fresh_users[1] },
        await userToken(user),
        403,
        "forbidden",
      ],
    ];
    for (const [label, handler, body, token, status, code, method] of cases) {
      const answer = await post(handler, body, token, method);
      assert.equal(answer.status, status, `${label}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.contentType, "application/json", label);
      assert.equal(answer.body.error, code, label);
      assert.equal(typeof answer.body.message, "string", label);
      assert.ok(answer.body.message.length > 10, label);
    }
    const preflight = await recommend(new Request("http://localhost/", { method: "OPTIONS" }));
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("Access-Control-Allow-Origin"), "*");
  },
});

Deno.test({
  name: "the user tower loads from an https-style URL as from a file, and only from safe places",
  ...dbTest,
  async fn() {
    const files: Record<string, string> = {
      "/user_tower.onnx": fx.user_tower.model_path,
      "/feature_spec.json": fx.user_tower.feature_spec_path,
    };
    const controller = new AbortController();
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen: () => {} },
      async (req) => {
        const file = files[new URL(req.url).pathname];
        return file ? new Response(await Deno.readFile(file)) : new Response("missing", { status: 404 });
      },
    );
    try {
      const base = `http://127.0.0.1:${server.addr.port}`;
      assert.deepEqual(
        await readResource(`${base}/user_tower.onnx`),
        await Deno.readFile(files["/user_tower.onnx"]),
      );
      await assert.rejects(readResource(`${base}/nothing`), /HTTP 404/);
      await assert.rejects(readResource("http://example.com/user_tower.onnx"), /local or https/);
      await assert.rejects(readResource("ftp://example.com/user_tower.onnx"), /local or https/);

      const userId = fx.parity_users.heavy;
      const asOf = BigInt(fx.as_of_us);
      const state = await asCaller(serviceCaller, (tx) => readUserState(tx, userId, asOf));
      const local = await computeUserVector(state);
      const remote = await computeUserVector({
        ...state,
        tower: {
          version: `${fx.version}-by-url`,
          modelPath: `${base}/user_tower.onnx`,
          featureSpecPath: `${base}/feature_spec.json`,
        },
      });
      assert.deepEqual(remote, local);
      // One session per version: the same record gives the same loaded model.
      const record = {
        version: fx.version,
        modelPath: fx.user_tower.model_path,
        featureSpecPath: fx.user_tower.feature_spec_path,
      };
      assert.equal(await userTower(record), await userTower(record));
    } finally {
      controller.abort();
      await server.finished;
    }
  },
});

Deno.test({
  name: "when another version goes live the function serves it with that version's user tower",
  ...dbTest,
  async fn() {
    const sql = owner();
    const next = "edge-test-next";
    await sql.begin(async (tx) => {
      await tx`select public.two_tower_create_version_partitions(${next})`;
      await tx`insert into public.embedding_model_versions (version, model_type, model_path, feature_spec_path)
               select ${next}, model_type, model_path, feature_spec_path
               from public.embedding_model_versions where version = ${fx.version}`;
      await tx`insert into public.two_tower_item_embeddings (model_version, video_id, embedding, popularity)
               select ${next}, video_id, embedding, popularity from public.two_tower_item_embeddings
               where model_version = ${fx.version}`;
      await tx`update public.embedding_model_versions set is_active = false where version = ${fx.version}`;
      await tx`update public.embedding_model_versions set is_active = true where version = ${next}`;
    });
    try {
      const userId = fx.fresh_users[0];
      const answer = await post(recommend, { k: 10 }, await userToken(userId));
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.model_version, next);
      assert.equal(answer.body.user_vector, "computed"); // no stored vectors for the new version yet
      const updated = await post(update, { user_id: userId }, await serviceToken());
      assert.equal(updated.body.model_version, next);
      const [count] = await sql`select count(*)::int as n from public.two_tower_user_embeddings
                                where model_version = ${next}`;
      assert.equal(count.n, 1);
    } finally {
      await sql.begin(async (tx) => {
        await tx`update public.embedding_model_versions set is_active = false where version = ${next}`;
        await tx`update public.embedding_model_versions set is_active = true where version = ${fx.version}`;
        await tx`select public.two_tower_drop_version(${next})`;
        await tx`delete from public.embedding_model_versions where version = ${next}`;
      });
    }
    const back = await post(recommend, { k: 10 }, await userToken(fx.fresh_users[0]));
    assert.equal(back.body.model_version, fx.version);
    assert.equal(back.body.user_vector, "stored");
  },
});

Deno.test({
  name: "close the connections",
  ...dbTest,
  async fn() {
    await clearModelCache();
    await closeDb();
    await closeOwner();
  },
});
