-- What the organizer's view reads: one of the scenario's 20 competitions at random
-- (bench_ids numbers them) with its registrations and their users, in one statement.
\set n random(1, 20)
SELECT c.title, c.registered_count, r.id, r.status, u.id, u.name
  FROM competitions c
  JOIN registrations r ON r.competition_id = c.id
  JOIN users u ON u.id = r.user_id
 WHERE c.id = (SELECT id FROM bench_ids WHERE n = :n)
 ORDER BY r.created_at DESC, r.id DESC;
