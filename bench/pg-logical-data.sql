-- Application-like data for bench/pg-logical.sh, generated server-side (no extensions needed).
--
--   psql -v create=1 -f bench/pg-logical-data.sql                 # the tables, once
--   psql -v first=1 -v last=270000 -f bench/pg-logical-data.sql   # events ids first..last; run
--                                                                 # disjoint ranges in parallel
-- Each events row is ~570 bytes: a body of words drawn (Zipf-like) from a 4000-word
-- vocabulary, a jsonb payload (ip, user agent, amount, session id, items), and a bytea of 16 random
-- bytes and 24 structured ones. zstd -3 packs it about 3:1 (pgbench_accounts alone packs ~50:1).
\set ON_ERROR_STOP on
\if :{?create}
CREATE TABLE IF NOT EXISTS words (id int PRIMARY KEY, w text NOT NULL);
INSERT INTO words
    SELECT i, translate(substr(md5(i::text), 1, 2 + i % 9), '0123456789', 'aeioulnrst') FROM generate_series(0, 3999) i
    ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS events (
    id         bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL,
    user_id    int NOT NULL,
    kind       text NOT NULL,
    payload    jsonb NOT NULL,
    body       text NOT NULL,
    blob       bytea
);
CREATE INDEX IF NOT EXISTS events_user_id ON events (user_id);
\else
SELECT setseed(:first::float8 / (:last + 1));
-- The vocabulary as an array, so a row's words are cheap array lookups.
WITH v AS (SELECT array_agg(w ORDER BY id) AS w FROM words)
INSERT INTO events (id, created_at, user_id, kind, payload, body, blob)
SELECT g,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '30 seconds',
       (100000 * random() ^ 2)::int,
       (ARRAY['view', 'view', 'view', 'click', 'click', 'login', 'search', 'purchase', 'signup', 'logout'])[1 + g * 7 % 10],
       jsonb_build_object(
           'ip', format('10.%s.%s.%s', (random() * 255)::int, (random() * 255)::int, (random() * 255)::int),
           'ua', (ARRAY['Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0', 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0',
                        'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Safari/604.1', 'okhttp/4.12.0'])[1 + (random() * 3)::int],
           'amount', round((random() * 500)::numeric, 2),
           'session', md5(g::text || random()::text),
           'items', (SELECT jsonb_agg((1000 * random() ^ 3)::int) FROM generate_series(1, 1 + g % 5))),
       (SELECT string_agg(v.w[(4000 * random() ^ 3)::int % 4000 + 1 + 0 * i], ' ') FROM generate_series(1, 25 + g % 30) i),
       uuid_send(gen_random_uuid()) || decode(lpad(to_hex(g), 16, '0') || repeat('00ff', 8), 'hex')
FROM v, generate_series(:first::bigint, :last::bigint) g;
\endif
