// Supabase Edge Function: top-K videos of the active two-tower version for the caller.
// See handler.ts for the request and the answer.
import { recommendationsHandler } from "./handler.ts";

Deno.serve(recommendationsHandler());
