-- Users' likes are private: a signed-in user reads, adds and removes only their own; the service
-- role reads all. Applied only where the app has not turned on row-level security on likes itself
-- (an app that did keeps its own policies); the pipeline connects as the owner and is unaffected.
do $likes$
begin
  if not (select relrowsecurity from pg_class where oid = 'public.likes'::regclass) then
    alter table public.likes enable row level security;
    create policy "a signed-in user reads their own likes" on public.likes
      for select to authenticated using (user_id = auth.uid());
    create policy "a signed-in user likes as themselves" on public.likes
      for insert to authenticated with check (user_id = auth.uid());
    create policy "a signed-in user removes their own likes" on public.likes
      for delete to authenticated using (user_id = auth.uid());
    create policy "the service role reads every like" on public.likes
      for select to service_role using (true);
    grant select, insert, delete on table public.likes to authenticated;
    grant select on table public.likes to service_role;
  end if;
end
$likes$;
