-- Two-tower model versions, their 64-d vectors, and top-K serving for the app.
--
-- Vectors are keyed by model version and stored in one table per kind, LIST-partitioned by
-- version: a new version is bulk-loaded into its own partition while the active one keeps
-- serving, its HNSW index is built after the load, and activation flips one flag. Readers
-- never compare a user vector with item vectors of another version.

create extension if not exists vector;

-- One row per tower of each trained version (design document: model_type 'user_tower' or
-- 'item_tower'). The active version has both rows active.
create table if not exists public.embedding_model_versions (
  id uuid primary key default gen_random_uuid(),
  version text not null,
  model_type text not null,
  model_path text,
  is_active boolean default false,
  created_at timestamptz default now(),
  embedding_dim integer not null default 64,
  feature_spec_path text,
  mlflow_run_id text,
  mlflow_model_version text,
  metrics jsonb not null default '{}'::jsonb,
  status text not null default 'candidate',
  status_reason text,
  activated_at timestamptz,
  constraint embedding_model_versions_model_type_check
    check (model_type in ('user_tower', 'item_tower')),
  constraint embedding_model_versions_status_check
    check (status in ('candidate', 'active', 'retired', 'rejected')),
  constraint embedding_model_versions_version_format
    check (version ~ '^[A-Za-z0-9._-]{1,40}$')
);
create unique index if not exists embedding_model_versions_version_type_key
  on public.embedding_model_versions (version, model_type);
create unique index if not exists embedding_model_versions_one_active_key
  on public.embedding_model_versions (model_type) where is_active;

create table if not exists public.feature_importance (
  id uuid primary key default gen_random_uuid(),
  model_version_id uuid references public.embedding_model_versions (id) on delete cascade,
  feature_name text not null,
  importance_score float not null,
  created_at timestamptz default now()
);
create index if not exists feature_importance_model_version_id_idx
  on public.feature_importance (model_version_id);

create table if not exists public.two_tower_item_embeddings (
  model_version text not null,
  video_id uuid not null,
  embedding vector(64) not null,
  popularity real not null default 0,
  created_at timestamptz not null default now(),
  primary key (model_version, video_id)
) partition by list (model_version);

create table if not exists public.two_tower_user_embeddings (
  model_version text not null,
  user_id uuid not null,
  embedding vector(64) not null,
  likes_until timestamptz,
  created_at timestamptz not null default now(),
  primary key (model_version, user_id)
) partition by list (model_version);

-- Vectors are served through recommend_videos only; no direct table access for app roles.
alter table public.embedding_model_versions enable row level security;
alter table public.feature_importance enable row level security;
alter table public.two_tower_item_embeddings enable row level security;
alter table public.two_tower_user_embeddings enable row level security;

-- Name of one version's partition of a vector table.
create or replace function public.two_tower_partition_name(p_table text, p_version text)
returns text
language sql
immutable
as $$
  select p_table || '_' || regexp_replace(lower(p_version), '[^a-z0-9]+', '_', 'g')
$$;

-- Creates the item and user partitions of a version (idempotent).
create or replace function public.two_tower_create_version_partitions(p_version text)
returns void
language plpgsql
set search_path = public, extensions
as $$
declare
  t text;
begin
  if p_version !~ '^[A-Za-z0-9._-]{1,40}$' then
    raise exception 'model version % is not a valid version name', p_version
      using errcode = '22023', hint = 'use letters, digits, dot, dash or underscore (at most 40)';
  end if;
  foreach t in array array['two_tower_item_embeddings', 'two_tower_user_embeddings'] loop
    if to_regclass(format('public.%I', public.two_tower_partition_name(t, p_version))) is null then
      execute format(
        'create table public.%I partition of public.%I for values in (%L)',
        public.two_tower_partition_name(t, p_version), t, p_version
      );
    end if;
  end loop;
end;
$$;

-- Builds the serving indexes of a version's item partition after its bulk load (idempotent).
create or replace function public.two_tower_build_item_index(
  p_version text, p_m integer default 16, p_ef_construction integer default 64
)
returns void
language plpgsql
set search_path = public, extensions
as $$
declare
  part text := public.two_tower_partition_name('two_tower_item_embeddings', p_version);
begin
  if to_regclass(format('public.%I', part)) is null then
    raise exception 'model version % has no item embeddings', p_version using errcode = 'P0002';
  end if;
  execute format(
    'create index if not exists %I on public.%I using hnsw (embedding vector_ip_ops) with (m = %s, ef_construction = %s)',
    part || '_hnsw', part, p_m, p_ef_construction
  );
  execute format(
    'create index if not exists %I on public.%I (popularity desc)', part || '_popularity', part
  );
  execute format('analyze public.%I', part);
end;
$$;

-- Drops a version's vectors (retention); refuses the active version.
create or replace function public.two_tower_drop_version(p_version text)
returns void
language plpgsql
set search_path = public, extensions
as $$
declare
  t text;
begin
  if exists (
    select 1 from public.embedding_model_versions where version = p_version and is_active
  ) then
    raise exception 'model version % is active and cannot be dropped', p_version using errcode = '55006';
  end if;
  foreach t in array array['two_tower_item_embeddings', 'two_tower_user_embeddings'] loop
    execute format('drop table if exists public.%I', public.two_tower_partition_name(t, p_version));
  end loop;
end;
$$;

-- Top-K videos for a user by the active model, excluding what the user already liked.
-- Users without a vector of the active version get the most popular videos; with no
-- active model at all, the most liked videos of the last 30 days ('popularity').
-- STABLE: every statement inside sees the caller's snapshot, so the active version and the
-- vectors are read consistently even while a new version is being activated.
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
