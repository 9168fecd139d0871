-- Serving from Supabase Edge Functions: who may read what.
--
-- 1. Supabase's API roles (anon, authenticated, service_role) and its JWT helpers (auth.uid(),
--    auth.role(), auth.jwt()), created ONLY where they are missing: on Supabase this part changes
--    nothing; on plain PostgreSQL (the embedded default) it gives the same names and meaning, so
--    the policies below and the Edge Functions run unchanged on both.
-- 2. Row-level security policies on the project's tables: an authenticated user may read the
--    active model version and their own user vector; the service role may read everything; no
--    one but the owner (the pipeline) writes. Each version's partitions get RLS too, with no
--    policy: read them through the parent tables (whose policies apply) or the functions below.
-- 3. recommend_videos and the Edge Functions' helpers are SECURITY DEFINER with a caller check:
--    a signed-in user may only ask about themselves; the owner and the service role about anyone.
--    They are executable by authenticated and service_role, not by anon.
-- The pipeline connects as the owner: RLS does not apply to it and nothing changes for it.

do $roles$
declare
  r text;
  is_superuser boolean := (select rolsuper from pg_roles where rolname = current_user);
begin
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    if not exists (select 1 from pg_roles where rolname = r) then
      execute format('create role %I nologin noinherit%s', r,
                     case when r = 'service_role' and is_superuser then ' bypassrls' else '' end);
      -- The owner switches to these roles for a transaction (set local role), as PostgREST does.
      execute format('grant %I to current_user', r);
    end if;
  end loop;
end
$roles$;

do $auth$
begin
  if to_regnamespace('auth') is null then
    create schema auth;
    grant usage on schema auth to anon, authenticated, service_role;
  end if;
  -- The same definitions as Supabase's: the claims of the request's JWT, set per transaction
  -- with set_config('request.jwt.claims', ..., true).
  if to_regprocedure('auth.jwt()') is null then
    create function auth.jwt() returns jsonb language sql stable as $fn$
      select coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
      )::jsonb
    $fn$;
  end if;
  if to_regprocedure('auth.uid()') is null then
    create function auth.uid() returns uuid language sql stable as $fn$
      select coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
      )::uuid
    $fn$;
  end if;
  if to_regprocedure('auth.role()') is null then
    create function auth.role() returns text language sql stable as $fn$
      select coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
      )::text
    $fn$;
  end if;
end
$auth$;

-- Raises insufficient_privilege unless the caller may ask about p_user_id: the owner and the
-- service role may ask about anyone; a caller in the anon or authenticated role (by SET ROLE or
-- by its JWT's role claim) only about the user its JWT names. The session's role setting is
-- read, not current_user, so the check holds inside SECURITY DEFINER functions.
create or replace function public.two_tower_check_caller(p_user_id uuid)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if (current_setting('role') in ('anon', 'authenticated')
      or coalesce(auth.role(), 'service_role') <> 'service_role')
     and (auth.uid() is null or p_user_id is distinct from auth.uid()) then
    raise exception 'a signed-in user may only ask about their own user id'
      using errcode = '42501', hint = 'omit the user id, or call with the service role';
  end if;
end;
$$;

-- recommend_videos as before (same ranking, same snapshot), with the caller check first.
create or replace function public.recommend_videos(p_user_id uuid, p_limit integer default 10)
returns table (video_id uuid, score double precision, model_version text)
language plpgsql
stable
security definer
set search_path = public, extensions
set hnsw.ef_search = 200
set hnsw.iterative_scan = strict_order
as $$
declare
  v_version text;
  v_partition text;
  v_user vector(64);
begin
  perform public.two_tower_check_caller(p_user_id);
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'p_limit must be between 1 and 1000, got %', p_limit using errcode = '22023';
  end if;

  select m.version into v_version
  from public.embedding_model_versions m
  where m.is_active and m.model_type = 'item_tower';

  if v_version is null then
    return query
      select l.video_id, count(*)::double precision, 'popularity'::text
      from public.likes l
      where l.video_id is not null
        and l.created_at >= now() - interval '30 days'
        and l.video_id in (select v.id from public.videos v)
        and not exists (
          select 1 from public.likes mine where mine.user_id = p_user_id and mine.video_id = l.video_id
        )
      group by l.video_id
      order by count(*) desc, l.video_id
      limit p_limit;
    return;
  end if;

  v_partition := public.two_tower_partition_name('two_tower_item_embeddings', v_version);

  select u.embedding into v_user
  from public.two_tower_user_embeddings u
  where u.model_version = v_version and u.user_id = p_user_id;

  if v_user is null then
    return query execute format(
      'select e.video_id, e.popularity::double precision, $1
       from public.%I e
       where not exists (select 1 from public.likes l where l.user_id = $2 and l.video_id = e.video_id)
       order by e.popularity desc, e.video_id
       limit $3',
      v_partition
    ) using v_version, p_user_id, p_limit;
    return;
  end if;

  return query execute format(
    'select e.video_id, -(e.embedding <#> $1)::double precision, $2
     from public.%I e
     where not exists (select 1 from public.likes l where l.user_id = $3 and l.video_id = e.video_id)
     order by e.embedding <#> $1
     limit $4',
    v_partition
  ) using v_user, v_version, p_user_id, p_limit;
end;
$$;

-- The ranking of recommend_videos for a user vector the caller computed (the Edge Function, when
-- the stored vector is missing or older than the user's latest like): the same SQL, the same
-- exclusions and index settings, against p_version's vectors, which must be the active version
-- in the caller's snapshot (else serialization_failure: read the active version again). A null
-- p_embedding gives the version's most popular videos, a null p_version the 'popularity'
-- fallback: exactly recommend_videos' answers for a user without a vector and with no model.
create or replace function public.two_tower_rank_videos(
  p_user_id uuid, p_embedding vector(64), p_version text, p_limit integer default 10
)
returns table (video_id uuid, score double precision, model_version text)
language plpgsql
stable
security definer
set search_path = public, extensions
set hnsw.ef_search = 200
set hnsw.iterative_scan = strict_order
as $$
declare
  v_active text;
  v_partition text;
begin
  perform public.two_tower_check_caller(p_user_id);
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'p_limit must be between 1 and 1000, got %', p_limit using errcode = '22023';
  end if;

  select m.version into v_active
  from public.embedding_model_versions m
  where m.is_active and m.model_type = 'item_tower';
  if v_active is distinct from p_version then
    raise exception 'model version % is not the active version (%)', coalesce(p_version, 'none'),
      coalesce(v_active, 'none') using errcode = '40001';
  end if;

  if p_version is null then
    return query
      select l.video_id, count(*)::double precision, 'popularity'::text
      from public.likes l
      where l.video_id is not null
        and l.created_at >= now() - interval '30 days'
        and l.video_id in (select v.id from public.videos v)
        and not exists (
          select 1 from public.likes mine where mine.user_id = p_user_id and mine.video_id = l.video_id
        )
      group by l.video_id
      order by count(*) desc, l.video_id
      limit p_limit;
    return;
  end if;

  v_partition := public.two_tower_partition_name('two_tower_item_embeddings', p_version);

  if p_embedding is null then
    return query execute format(
      'select e.video_id, e.popularity::double precision, $1
       from public.%I e
       where not exists (select 1 from public.likes l where l.user_id = $2 and l.video_id = e.video_id)
       order by e.popularity desc, e.video_id
       limit $3',
      v_partition
    ) using p_version, p_user_id, p_limit;
    return;
  end if;

  return query execute format(
    'select e.video_id, -(e.embedding <#> $1)::double precision, $2
     from public.%I e
     where not exists (select 1 from public.likes l where l.user_id = $3 and l.video_id = e.video_id)
     order by e.embedding <#> $1
     limit $4',
    v_partition
  ) using p_embedding, p_version, p_user_id, p_limit;
end;
$$;

-- A user's likes since p_since (and those without a timestamp, which the pipeline reads so it can
-- count them), as stored, with what the user tower needs of each video: the rows the pipeline's
-- clean-up and feature preparation start from. Times are epoch microseconds (exact).
create or replace function public.two_tower_user_history(p_user_id uuid, p_since timestamptz)
returns table (
  video_id text, created_us text, known boolean, genre text, maker text, price double precision
)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform public.two_tower_check_caller(p_user_id);
  return query
    select l.video_id::text,
           ((extract(epoch from l.created_at) * 1000000)::bigint)::text,
           v.id is not null,
           v.genre,
           v.maker,
           v.price::double precision
    from public.likes l
    left join public.videos v on v.id = l.video_id
    where l.user_id = p_user_id and (l.created_at >= p_since or l.created_at is null);
end;
$$;

-- A user's optional demographics, and whether the user is known at all (an account in
-- auth.users where that table exists, a profile, a like or a stored vector).
create or replace function public.two_tower_user_profile(p_user_id uuid)
returns table (known boolean, age_range text, region text)
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_known boolean;
  v_age_range text;
  v_region text;
begin
  perform public.two_tower_check_caller(p_user_id);
  select p.age_range, p.region, true into v_age_range, v_region, v_known
  from public.profiles p where p.id = p_user_id;
  v_known := coalesce(v_known, false)
    or exists (select 1 from public.likes l where l.user_id = p_user_id)
    or exists (select 1 from public.two_tower_user_embeddings u where u.user_id = p_user_id);
  if not v_known and to_regclass('auth.users') is not null then
    execute 'select exists (select 1 from auth.users where id = $1)' into v_known using p_user_id;
  end if;
  return query select v_known, v_age_range, v_region;
end;
$$;

-- Genres of videos (the catalogue is public to signed-in users): for diversity re-ranking.
create or replace function public.two_tower_video_genres(p_video_ids uuid[])
returns table (video_id uuid, genre text)
language sql
stable
security definer
set search_path = ''
as $$
  select v.id, v.genre from public.videos v where v.id = any(p_video_ids)
$$;

-- New version partitions: RLS on, no policy, no grants for the API roles (Supabase's default
-- privileges would otherwise let anon and authenticated read another user's vector through a
-- partition directly). Reads go through the parent tables, whose policies apply.
create or replace function public.two_tower_create_version_partitions(p_version text)
returns void
language plpgsql
set search_path = public, extensions
as $$
declare
  t text;
  part text;
begin
  if p_version !~ '^[A-Za-z0-9._-]{1,40}$' then
    raise exception 'model version % is not a valid version name', p_version
      using errcode = '22023', hint = 'use letters, digits, dot, dash or underscore (at most 40)';
  end if;
  foreach t in array array['two_tower_item_embeddings', 'two_tower_user_embeddings'] loop
    part := public.two_tower_partition_name(t, p_version);
    if to_regclass(format('public.%I', part)) is null then
      execute format('create table public.%I partition of public.%I for values in (%L)', part, t, p_version);
      execute format('alter table public.%I enable row level security', part);
      execute format('revoke all on table public.%I from public, anon, authenticated, service_role', part);
    end if;
  end loop;
end;
$$;

-- The same for the partitions that exist already.
do $partitions$
declare
  part regclass;
begin
  for part in
    select i.inhrelid::regclass from pg_inherits i
    where i.inhparent in ('public.two_tower_item_embeddings'::regclass, 'public.two_tower_user_embeddings'::regclass)
  loop
    execute format('alter table %s enable row level security', part);
    execute format('revoke all on table %s from public, anon, authenticated, service_role', part);
  end loop;
end
$partitions$;

-- Row-level security policies (RLS itself was enabled with the tables).
drop policy if exists "active model versions are readable by signed-in users" on public.embedding_model_versions;
create policy "active model versions are readable by signed-in users"
  on public.embedding_model_versions for select to authenticated
  using (is_active);
drop policy if exists "the service role reads every model version" on public.embedding_model_versions;
create policy "the service role reads every model version"
  on public.embedding_model_versions for select to service_role
  using (true);

drop policy if exists "the service role reads feature importance" on public.feature_importance;
create policy "the service role reads feature importance"
  on public.feature_importance for select to service_role
  using (true);

drop policy if exists "the service role reads item vectors" on public.two_tower_item_embeddings;
create policy "the service role reads item vectors"
  on public.two_tower_item_embeddings for select to service_role
  using (true);

drop policy if exists "a signed-in user reads their own user vectors" on public.two_tower_user_embeddings;
create policy "a signed-in user reads their own user vectors"
  on public.two_tower_user_embeddings for select to authenticated
  using (user_id = (select auth.uid()));
drop policy if exists "the service role reads every user vector" on public.two_tower_user_embeddings;
create policy "the service role reads every user vector"
  on public.two_tower_user_embeddings for select to service_role
  using (true);

-- Table privileges: reading only, and only what the policies allow; writing stays with the owner.
revoke all on table public.embedding_model_versions, public.feature_importance,
  public.two_tower_item_embeddings, public.two_tower_user_embeddings from public, anon, authenticated, service_role;
grant select on table public.embedding_model_versions, public.two_tower_user_embeddings to authenticated;
grant select on table public.embedding_model_versions, public.feature_importance,
  public.two_tower_item_embeddings, public.two_tower_user_embeddings to service_role;

-- Function privileges: serving for signed-in users and the service role; the pipeline's own
-- functions for the owner only.
revoke all on function public.recommend_videos(uuid, integer) from public, anon;
revoke all on function public.two_tower_rank_videos(uuid, vector, text, integer) from public, anon;
revoke all on function public.two_tower_user_history(uuid, timestamptz) from public, anon;
revoke all on function public.two_tower_user_profile(uuid) from public, anon;
revoke all on function public.two_tower_video_genres(uuid[]) from public, anon;
grant execute on function public.recommend_videos(uuid, integer) to authenticated, service_role;
grant execute on function public.two_tower_rank_videos(uuid, vector, text, integer) to authenticated, service_role;
grant execute on function public.two_tower_user_history(uuid, timestamptz) to authenticated, service_role;
grant execute on function public.two_tower_user_profile(uuid) to authenticated, service_role;
grant execute on function public.two_tower_video_genres(uuid[]) to authenticated, service_role;

revoke all on function public.two_tower_check_caller(uuid) from public, anon, authenticated, service_role;
revoke all on function public.two_tower_create_version_partitions(text) from public, anon, authenticated, service_role;
revoke all on function public.two_tower_build_item_index(text, integer, integer) from public, anon, authenticated, service_role;
revoke all on function public.two_tower_drop_version(text) from public, anon, authenticated, service_role;
