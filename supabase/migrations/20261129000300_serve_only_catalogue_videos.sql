-- 1. A video deleted from the catalogue is never recommended, even before the next backfill
--    rewrites its shard: the ranking keeps only vectors of videos that exist (one primary-key
--    probe per candidate).
-- 2. recommend_videos delegates to two_tower_rank_videos, so the ranking SQL lives in one place;
--    both are STABLE, so the nested call reads the same snapshot.
-- 3. Version names are lowercase letters, digits and dashes (at most 30): two names can no longer
--    map to one partition, and index names derived from them stay within 63 characters.

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
         and exists (select 1 from public.videos v where v.id = e.video_id)
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
       and exists (select 1 from public.videos v where v.id = e.video_id)
     order by e.embedding <#> $1
     limit $4',
    v_partition
  ) using p_embedding, p_version, p_user_id, p_limit;
end;
$$;

create or replace function public.recommend_videos(p_user_id uuid, p_limit integer default 10)
returns table (video_id uuid, score double precision, model_version text)
language plpgsql
stable
security definer
set search_path = public, extensions
as $$
declare
  v_version text;
  v_user vector(64);
begin
  perform public.two_tower_check_caller(p_user_id);
  select m.version into v_version
  from public.embedding_model_versions m
  where m.is_active and m.model_type = 'item_tower';
  if v_version is not null then
    select u.embedding into v_user
    from public.two_tower_user_embeddings u
    where u.model_version = v_version and u.user_id = p_user_id;
  end if;
  return query select * from public.two_tower_rank_videos(p_user_id, v_user, v_version, p_limit);
end;
$$;

alter table public.embedding_model_versions
  drop constraint if exists embedding_model_versions_version_format;
alter table public.embedding_model_versions
  add constraint embedding_model_versions_version_format check (version ~ '^[a-z0-9][a-z0-9-]{0,29}$');
