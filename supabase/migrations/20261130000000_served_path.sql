-- What users without a vector are served, and which likes a user's vector is computed from.
--
-- 1. two_tower_popular_videos: per model version, the popular videos of each demographic
--    segment (age range, region; '' where the profile lacks one), written by the pipeline with
--    the version's vectors. A user without likes gets their segment's list, then the version's
--    overall popularity order (the item partition's popularity column).
-- 2. two_tower_rank_videos: that cold-start order; with no active version at all, the most
--    liked videos of the last 30 days and then of all time, so a quiet month never empties it.
-- 3. two_tower_user_history(user, limit, until): a user's newest likes of any age (the pipeline
--    embeds a user from their newest likes, however old: the training window bounds training,
--    not who is served), repeats and likes of unknown videos already dropped.
-- 4. two_tower_drop_version also drops the version's lists.

create table if not exists public.two_tower_popular_videos (
  model_version text not null,
  age_range text not null default '',
  region text not null default '',
  rank integer not null,
  video_id uuid not null,
  score real not null,
  primary key (model_version, age_range, region, rank)
);
alter table public.two_tower_popular_videos enable row level security;
revoke all on table public.two_tower_popular_videos from public, anon, authenticated, service_role;
grant select on table public.two_tower_popular_videos to service_role;
drop policy if exists "the service role reads popular videos" on public.two_tower_popular_videos;
create policy "the service role reads popular videos"
  on public.two_tower_popular_videos for select to service_role using (true);

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
  v_age_range text;
  v_region text;
  v_listed integer := 0;
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
      select l.video_id, (count(*) filter (where l.created_at >= now() - interval '30 days'))::double precision,
             'popularity'::text
      from public.likes l
      where l.video_id is not null
        and l.created_at <= now()
        and l.video_id in (select v.id from public.videos v)
        and not exists (
          select 1 from public.likes mine where mine.user_id = p_user_id and mine.video_id = l.video_id
        )
      group by l.video_id
      order by count(*) filter (where l.created_at >= now() - interval '30 days') desc, count(*) desc, l.video_id
      limit p_limit;
    return;
  end if;

  v_partition := public.two_tower_partition_name('two_tower_item_embeddings', p_version);

  if p_embedding is null then
    select coalesce(p.age_range, ''), coalesce(p.region, '') into v_age_range, v_region
    from public.profiles p where p.id = p_user_id;
    v_age_range := coalesce(v_age_range, '');
    v_region := coalesce(v_region, '');
    if v_age_range <> '' or v_region <> '' then
      return query
        select s.video_id, s.score::double precision, p_version
        from public.two_tower_popular_videos s
        where s.model_version = p_version and s.age_range = v_age_range and s.region = v_region
          and not exists (select 1 from public.likes l where l.user_id = p_user_id and l.video_id = s.video_id)
          and exists (select 1 from public.videos v where v.id = s.video_id)
        order by s.rank
        limit p_limit;
      get diagnostics v_listed = row_count;
    end if;
    if v_listed < p_limit then
      return query execute format(
        'select e.video_id, e.popularity::double precision, $1
         from public.%I e
         where not exists (select 1 from public.likes l where l.user_id = $2 and l.video_id = e.video_id)
           and exists (select 1 from public.videos v where v.id = e.video_id)
           and not exists (select 1 from public.two_tower_popular_videos s
                           where s.model_version = $1 and s.age_range = $4 and s.region = $5
                             and s.video_id = e.video_id)
         order by e.popularity desc, e.video_id
         limit $3',
        v_partition
      ) using p_version, p_user_id, p_limit - v_listed, v_age_range, v_region;
    end if;
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

create or replace function public.two_tower_user_history(p_user_id uuid, p_limit integer, p_until timestamptz)
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
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'p_limit must be between 1 and 1000, got %', p_limit using errcode = '22023';
  end if;
  -- A repeated like of a video counts once, as its first like (as the pipeline cleans likes).
  return query
    select f.video_id::text,
           ((extract(epoch from f.created_at) * 1000000)::bigint)::text,
           true,
           v.genre,
           v.maker,
           v.price::double precision
    from (
      select distinct on (l.video_id) l.video_id, l.created_at
      from public.likes l
      where l.user_id = p_user_id and l.video_id is not null
      order by l.video_id, l.created_at asc nulls first
    ) f
    join public.videos v on v.id = f.video_id
    where f.created_at is not null and f.created_at <= p_until
    order by f.created_at desc, f.video_id desc
    limit p_limit;
end;
$$;

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
  delete from public.two_tower_popular_videos where model_version = p_version;
end;
$$;

revoke all on function public.two_tower_user_history(uuid, integer, timestamptz) from public, anon;
grant execute on function public.two_tower_user_history(uuid, integer, timestamptz) to authenticated, service_role;
