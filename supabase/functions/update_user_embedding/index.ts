// Supabase Edge Function: recompute and store one user's vector of the active two-tower version.
// See handler.ts for the request and the answer.
import { updateUserEmbeddingHandler } from "./handler.ts";

Deno.serve(updateUserEmbeddingHandler());
