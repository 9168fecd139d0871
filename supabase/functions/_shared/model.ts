// The active version's user tower in ONNX Runtime (onnxruntime-web, WebAssembly: it runs in
// Deno and in Supabase's Edge Runtime) and its feature spec, loaded once per model version and
// replaced when the active version changes.
//
// model_path / feature_spec_path of the version's rows say where the files are: a local file
// (the embedded default: the pipeline's state folder) or an https URL (production, e.g. a
// Supabase Storage object; SUPABASE_SERVICE_ROLE_KEY is sent when the URL is under SUPABASE_URL,
// for private buckets). http is accepted for loopback addresses only.

import * as ort from "onnxruntime-web";
import { type FeatureSpec, parseFeatureSpec, type UserInputs } from "./features.ts";

ort.env.wasm.numThreads = 1; // no worker threads in an Edge Function
ort.env.logLevel = "error";
const wasmPaths = Deno.env.get("ONNX_WASM_PATHS");
if (wasmPaths) ort.env.wasm.wasmPaths = wasmPaths;

export interface UserTowerRecord {
  version: string;
  modelPath: string;
  featureSpecPath: string;
}

export interface LoadedModel {
  version: string;
  spec: FeatureSpec;
  /** The user's 64-d vector (L2-normalised by the tower). */
  embed(inputs: UserInputs): Promise<Float32Array>;
}

const OUTPUT = "embedding";
const KEEP = 2; // versions kept in memory (the active one, and the previous during a switch)
const cache = new Map<string, Promise<CachedModel>>();

interface CachedModel extends LoadedModel {
  release(): Promise<void>;
}

function isLoopback(url: URL): boolean {
  return ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname) || url.hostname.startsWith("127.");
}

/** The bytes of a local file, a file: URL or an https URL. */
export async function readResource(location: string): Promise<Uint8Array> {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
    const url = new URL(location);
    if (url.protocol === "file:") return await Deno.readFile(url);
    if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopback(url))) {
      throw new Error(`model files must be local or https, got ${url.protocol}//${url.host}`);
    }
    const headers: Record<string, string> = {};
    const supabaseUrl = Deno.env.get("SUPABASE_URL");
    const key = Deno.env.get("SUPABASE_SERVICE_ROLE_KEY");
    if (supabaseUrl && key && location.startsWith(supabaseUrl)) headers.Authorization = `Bearer ${key}`;
    const response = await fetch(url, { headers });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`fetching ${url.origin}${url.pathname} failed: HTTP ${response.status}`);
    }
    return new Uint8Array(await response.arrayBuffer());
  }
  return await Deno.readFile(location);
}

async function load(record: UserTowerRecord): Promise<CachedModel> {
  const [modelBytes, specBytes] = await Promise.all([
    readResource(record.modelPath),
    readResource(record.featureSpecPath),
  ]);
  const spec = parseFeatureSpec(new TextDecoder().decode(specBytes));
  const session = await ort.InferenceSession.create(modelBytes, { graphOptimizationLevel: "all" });
  if (!session.outputNames.includes(OUTPUT)) {
    throw new Error(`user tower of ${record.version} has no "${OUTPUT}" output`);
  }
  // One run at a time per session; runs take a millisecond or two.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(task: () => Promise<T>): Promise<T> => {
    const next = queue.then(task, task);
    queue = next.catch(() => undefined);
    return next;
  };
  return {
    version: record.version,
    spec,
    embed: (inputs) =>
      serial(async () => {
        const h = spec.historyLength;
        const feeds: Record<string, ort.Tensor> = {
          hist_video_idx: new ort.Tensor("int64", inputs.hist_video_idx, [1, h]),
          hist_genre_idx: new ort.Tensor("int64", inputs.hist_genre_idx, [1, h]),
          hist_maker_idx: new ort.Tensor("int64", inputs.hist_maker_idx, [1, h]),
          hist_price: new ort.Tensor("float32", inputs.hist_price, [1, h]),
          hist_age_days: new ort.Tensor("float32", inputs.hist_age_days, [1, h]),
          user_age_range_idx: new ort.Tensor("int64", inputs.user_age_range_idx, [1]),
          user_region_idx: new ort.Tensor("int64", inputs.user_region_idx, [1]),
        };
        const used = Object.fromEntries(session.inputNames.map((name) => {
          if (!(name in feeds)) {
            throw new Error(`user tower input "${name}" is not one the function provides`);
          }
          return [name, feeds[name]];
        }));
        const result = await session.run(used);
        return Float32Array.from(result[OUTPUT].data as Float32Array);
      }),
    release: () => serial(() => session.release()),
  };
}

/** The loaded user tower of a version (cached; loaded once even under concurrent requests). */
export function userTower(record: UserTowerRecord): Promise<LoadedModel> {
  const key = JSON.stringify([record.version, record.modelPath, record.featureSpecPath]);
  let entry = cache.get(key);
  if (!entry) {
    entry = load(record);
    cache.set(key, entry);
    entry.catch(() => cache.delete(key)); // a failed load is retried by the next request
    while (cache.size > KEEP) {
      const [oldest, old] = cache.entries().next().value as [string, Promise<CachedModel>];
      cache.delete(oldest);
      old.then((model) => model.release()).catch(() => undefined);
    }
  } else {
    cache.delete(key); // most recently used last
    cache.set(key, entry);
  }
  return entry;
}

/** Drops every cached session (tests). */
export async function clearModelCache(): Promise<void> {
  const entries = [...cache.values()];
  cache.clear();
  await Promise.all(entries.map((entry) => entry.then((model) => model.release()).catch(() => undefined)));
}
